"""docker-compose.yml against the Compose specification's schema, offline, plus its wiring."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.ops.server import ROOT

COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "nginx" / "nginx.conf"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SCHEMA_OPTION = ["--builtin-schema", "vendor.compose-spec"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def graceful_shutdown_default() -> int:
    script = (ROOT / "deploy" / "serve.sh").read_text()
    return int(re.search(r"GLASSBOX_GRACEFUL_SHUTDOWN_S:-(\d+)", script).group(1))


def test_compose_file_matches_the_compose_spec_schema():
    # check-jsonschema ships the Compose specification's JSON schema: no network, no Docker.
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *SCHEMA_OPTION, str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_api_has_its_healthcheck_models_volume_and_grace_period(compose):
    api = compose["services"]["api"]
    assert "/health/ready" in " ".join(api["healthcheck"]["test"])
    mounts = {volume["target"]: volume for volume in api["volumes"]}
    assert mounts["/models"]["read_only"] is True
    assert api["environment"]["GLASSBOX_MODEL_DIR"] == "/models"
    assert seconds(api["stop_grace_period"]) > graceful_shutdown_default()


def test_scale_profile_runs_replicas_behind_nginx_with_prometheus(compose):
    services = compose["services"]
    assert "profiles" not in services["api"]
    for name in ("replica", "nginx", "prometheus"):
        assert services[name]["profiles"] == ["scale"], name
    replicas = re.fullmatch(r"\$\{\w+:-(\d+)\}", str(services["replica"]["deploy"]["replicas"]))
    assert replicas
    assert int(replicas.group(1)) > 1
    assert services["nginx"]["depends_on"]["replica"]["condition"] == "service_healthy"
    mounted = {
        volume["source"] for name in ("nginx", "prometheus") for volume in services[name]["volumes"]
    }
    assert {"./deploy/nginx/nginx.conf", "./deploy/prometheus/prometheus.yml"} <= mounted


def test_nginx_balances_over_the_replicas():
    conf = NGINX.read_text()
    assert re.search(r"server replica:8000 resolve", conf)
    assert "proxy_pass http://glassbox;" in conf
    assert conf.count("{") == conf.count("}")


def test_prometheus_scrapes_every_replica_directly():
    config = yaml.safe_load(PROMETHEUS.read_text())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "glassbox")
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"] == [
        {"names": ["replica"], "type": "A", "port": 8000, "refresh_interval": "15s"}
    ]
