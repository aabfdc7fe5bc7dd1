"""deploy/k8s against the Kubernetes API schemas (kubernetes-validate, offline), plus wiring."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml

from tests.ops.manifests import documents, only_resource
from tests.ops.server import ROOT

K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes minor still commonly run; every field used here exists since 1.25.
KUBERNETES_VERSION = "1.30.0"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def resource(kind: str) -> dict:
    return only_resource(MANIFESTS, kind)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid_kubernetes(path):
    for doc in documents(path):
        # strict: a misspelt or misplaced field fails instead of being ignored by the API.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]
    container = resource("Deployment")["spec"]["template"]["spec"]["containers"][0]
    image_names = [image["name"] for image in kustomization["images"]]
    assert container["image"].split(":")[0] in image_names


def api_container() -> dict:
    return resource("Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_probes_use_the_health_routes():
    container = api_container()
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    # The gRPC health service's overall status follows /health/ready (tests/grpc checks it).
    grpc_port = {port["name"]: port["containerPort"] for port in container["ports"]}["grpc"]
    assert container["readinessProbe"]["grpc"] == {"port": grpc_port}
    startup = container["startupProbe"]
    # Loading the models must not be cut short: at least two minutes before a restart.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def memory_mib(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def test_resources_have_requests_and_limits():
    resources = api_container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    assert memory_mib(resources["requests"]["memory"]) <= memory_mib(resources["limits"]["memory"])


def test_termination_leaves_time_to_drain():
    pod = resource("Deployment")["spec"]["template"]["spec"]
    pre_stop = api_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    script = (ROOT / "deploy" / "serve.sh").read_text()
    graceful = int(re.search(r"GLASSBOX_GRACEFUL_SHUTDOWN_S:-(\d+)", script).group(1))
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + graceful


def test_pods_run_as_the_images_user():
    pod = resource("Deployment")["spec"]["template"]["spec"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\d+)", dockerfile, re.M)[-1]
    assert pod["securityContext"]["runAsUser"] == int(user)
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_service_and_autoscaler_point_at_the_deployment():
    deployment = resource("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = resource("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    target = resource("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    budget = resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert budget.items() <= labels.items()
