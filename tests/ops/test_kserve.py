"""deploy/kserve against KServe's own CRD schemas (vendored in tests/fixtures/kserve, offline),
plus its wiring to Glassbox: ports, probes, settings and the model folder."""

from __future__ import annotations

import copy
import gzip
import json
import re
from functools import cache
from importlib.resources import files

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from app.core.settings import Settings
from app.http import observability
from app.http.routes import health, tfserving, v2
from tests.ops.manifests import documents, only_resource
from tests.ops.server import ROOT

KSERVE = ROOT / "deploy" / "kserve"
SCHEMAS = ROOT / "tests" / "fixtures" / "kserve"
MANIFESTS = sorted(path for path in KSERVE.glob("*.yaml") if path.name != "kustomization.yaml")
# metadata is checked as the API server checks it, as an ObjectMeta (kubernetes-validate's strict
# schemas, the Kubernetes minor tests/ops/test_k8s.py validates against).
KUBERNETES_DEFINITIONS = "kubernetes-json-schema/v1.30.0-local-strict/_definitions.json"
OBJECT_META = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# From KServe v0.20.0's pkg/constants/constants.go: where the storage initializer puts the
# storageUri's contents, the container that serves, and the protocols a runtime may name.
MODEL_MOUNT_PATH = "/mnt/models"
SERVING_CONTAINER = "kserve-container"
PROTOCOLS = {"v1", "v2", "grpc-v1", "grpc-v2"}
# pkg/apis/serving/v1beta1/inference_service_validation.go: IsvcNameFmt.
ISVC_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def resource(kind: str) -> dict:
    return only_resource(MANIFESTS, kind)


@cache
def crds() -> dict[str, dict]:
    """The vendored CRDs (tests/fixtures/kserve/refresh.py), by kind."""
    vendored = [json.loads(gzip.decompress(path.read_bytes())) for path in SCHEMAS.glob("*.gz")]
    return {crd["kind"]: crd for crd in vendored}


def strict(schema: object) -> object:
    """The schema with unknown fields refused where the API server refuses them: every object
    that lists its properties, unless it preserves unknown fields (only `status` does) or says
    what else it takes. This is a structural schema's pruning, which kubectl's default
    (`--validate=strict`) turns into an error."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        tightened["additionalProperties"] = False
    return tightened


@cache
def validator(kind: str) -> jsonschema.protocols.Validator:
    definitions = json.loads(
        files("kubernetes_validate").joinpath(KUBERNETES_DEFINITIONS).read_text()
    )
    schema = strict(crds()[kind]["openAPIV3Schema"])
    # The CRD leaves metadata to the API server: {"type": "object"}.
    schema["properties"]["metadata"] = {"$ref": definitions["$id"] + OBJECT_META}
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(doc: dict) -> list[str]:
    crd = crds()[doc["kind"]]
    found = [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator(doc["kind"]).iter_errors(doc)
    ]
    if doc["apiVersion"] != f"{crd['group']}/{crd['version']}":
        found.append(f"apiVersion: {doc['apiVersion']} is not {crd['group']}/{crd['version']}")
    return found


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid_against_kserves_crd(path):
    for doc in documents(path):
        assert schema_errors(doc) == []


def broken(kind: str, path: list[str | int], value: object) -> dict:
    """The manifest of that kind with one field set to a value; `...` deletes it."""
    doc = copy.deepcopy(resource(kind))
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return doc


CONTAINER = ["spec", "containers", 0]
MODEL = ["spec", "predictor", "model"]


BROKEN = [
    # Unknown fields, which the API server refuses rather than ignores.
    ("ServingRuntime", [*CONTAINER, "livenesProbe"], {}, "'livenesProbe' was unexpected"),
    ("ServingRuntime", ["spec", "protocolVersion"], ["v2"], "'protocolVersion' was unexpected"),
    ("ServingRuntime", ["metadata", "label"], {"a": "b"}, "'label' was unexpected"),
    ("InferenceService", [*MODEL, "storageURI"], "s3://x", "'storageURI' was unexpected"),
    # Wrong types and values.
    ("ServingRuntime", [*CONTAINER, "ports", 0, "containerPort"], "8000", "is not of type"),
    ("ServingRuntime", ["spec", "supportedModelFormats", 0, "priority"], 0, "less than"),
    ("InferenceService", ["spec", "predictor", "scaleMetric"], "latency", "is not one of"),
    ("InferenceService", ["spec", "predictor", "minReplicas"], "2", "is not of type"),
    # Missing required fields.
    ("ServingRuntime", ["spec", "containers"], ..., "'containers' is a required property"),
    ("ServingRuntime", [*CONTAINER, "name"], ..., "'name' is a required property"),
    ("InferenceService", [*MODEL, "modelFormat", "name"], ..., "'name' is a required"),
    ("InferenceService", ["spec", "predictor"], ..., "'predictor' is a required property"),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "error"),
    BROKEN,
    ids=[f"{kind}.{'.'.join(map(str, path))}" for kind, path, _, _ in BROKEN],
)
def test_schema_refuses_a_broken_manifest(kind, path, value, error):
    assert any(error in message for message in schema_errors(broken(kind, path, value)))


def test_schema_refuses_another_api_version():
    doc = broken("ServingRuntime", ["apiVersion"], "serving.kserve.io/v1beta1")
    assert schema_errors(doc) == [
        "apiVersion: serving.kserve.io/v1beta1 is not serving.kserve.io/v1alpha1"
    ]


def test_kustomization_lists_every_manifest_and_the_image():
    kustomization = yaml.safe_load((KSERVE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]
    image = server_container()["image"].split(":")[0]
    assert image in [entry["name"] for entry in kustomization["images"]]


def server_container() -> dict:
    [container] = resource("ServingRuntime")["spec"]["containers"]
    assert container["name"] == SERVING_CONTAINER
    return container


def ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in server_container()["ports"]}


def env() -> dict[str, str]:
    return {var["name"]: var["value"] for var in server_container()["env"]}


def image_env() -> dict[str, str]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"\b(GLASSBOX_\w+)=(\S+)", dockerfile))


def test_ports_are_glassboxs_own():
    serve_script = (ROOT / "deploy" / "serve.sh").read_text()
    http_default = int(re.search(r'port="\$\{GLASSBOX_PORT:-(\d+)\}"', serve_script).group(1))
    grpc_default = Settings.model_fields["grpc_port"].default
    assert ports() == {"http": http_default, "grpc": grpc_default}
    # The image listens there (its environment wins over the defaults), and the runtime leaves
    # the image's settings alone.
    assert int(image_env()["GLASSBOX_PORT"]) == http_default
    assert int(image_env()["GLASSBOX_GRPC_PORT"]) == grpc_default
    assert {"GLASSBOX_PORT", "GLASSBOX_GRPC_PORT", "GLASSBOX_HOST"}.isdisjoint(env())
    # KServe publishes the first port on the Service's port 80: HTTP, which clients expect there.
    assert server_container()["ports"][0]["name"] == "http"


def routes(router) -> set[str]:
    return {route.path for route in router.routes if "GET" in route.methods}


def test_probes_ask_the_health_routes():
    container = server_container()
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = container["readinessProbe"]["httpGet"]
    assert {probe["port"] for probe in probes.values()} == {ports()["http"]}
    assert {probe["path"] for probe in probes.values()} <= routes(health.router)
    # Liveness is not readiness: a pod whose model is loading or missing is not restarted.
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_metrics_annotations_point_at_the_metrics_route():
    annotations = resource("ServingRuntime")["spec"]["annotations"]
    for prefix in ("prometheus.kserve.io", "prometheus.io"):
        assert int(annotations[f"{prefix}/port"]) == ports()["http"]
        assert annotations[f"{prefix}/path"] in routes(observability.router)


def script_variables() -> set[str]:
    """The variables deploy/serve.sh reads itself (GLASSBOX_PORT, GLASSBOX_WORKERS, ...)."""
    return set(re.findall(r"\$\{(GLASSBOX_\w+):-", (ROOT / "deploy" / "serve.sh").read_text()))


def test_env_is_glassbox_settings_with_valid_values(monkeypatch):
    settings = {f"GLASSBOX_{name.upper()}" for name in Settings.model_fields}
    assert set(env()) <= settings | script_variables()
    for name, value in env().items():
        monkeypatch.setenv(name, value)
    # Read as the server reads them: a misspelt value would stop it at start.
    Settings()


def test_the_model_folder_is_where_kserve_puts_the_storage_uri():
    assert env()["GLASSBOX_MODEL_DIR"] == MODEL_MOUNT_PATH
    assert env()["GLASSBOX_POLL_INTERVAL_S"] == "0"
    # KServe replaces {{.Name}} with the InferenceService's name, so that is the model loaded,
    # and the example names a model that exists in the layout the storageUri must hold.
    assert env()["GLASSBOX_MODELS"] == "{{.Name}}"
    name = resource("InferenceService")["metadata"]["name"]
    assert sorted((ROOT / "models" / name).glob("[0-9]*/metadata.json"))


def test_no_model_file_is_empty():
    # KServe's S3 download skips zero-byte objects (python/storage/kserve_storage), and the
    # server checks every file its card lists.
    assert [
        path for path in (ROOT / "models").rglob("*") if path.is_file() and not path.stat().st_size
    ] == []


def test_inference_service_names_the_runtime_a_format_and_a_protocol_it_has():
    runtime = resource("ServingRuntime")
    isvc = resource("InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    # KServe's match (RuntimeSupportsModel): the name, and the version when the model gives one.
    formats = {(f["name"], f.get("version")) for f in runtime["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert ISVC_NAME.fullmatch(isvc["metadata"]["name"])
    assert model["storageUri"]


def test_the_format_version_is_the_models_tensorflow():
    versions = {
        f.get("version") for f in resource("ServingRuntime")["spec"]["supportedModelFormats"]
    }
    cards = sorted((ROOT / "models").glob("*/[0-9]*/metadata.json"))
    assert cards
    for card in cards:
        tensorflow = json.loads(card.read_text())["library_versions"]["tensorflow"]
        assert tensorflow.split(".")[0] in versions, card


def test_every_protocol_the_runtime_names_is_served():
    grpc_server = (ROOT / "app" / "grpc" / "server.py").read_text()
    served = {
        "v1": "/v1/models/{name}:predict" in {route.path for route in tfserving.router.routes},
        "v2": "/v2/models/{name}/infer" in {route.path for route in v2.router.routes},
        "grpc-v1": "add_PredictionServiceServicer_to_server(" in grpc_server,
        "grpc-v2": "add_GRPCInferenceServiceServicer_to_server(" in grpc_server,
    }
    named = resource("ServingRuntime")["spec"]["protocolVersions"]
    assert set(named) <= PROTOCOLS
    assert all(served[protocol] for protocol in named)


def test_two_ports_mean_standard_mode_without_knative_canaries():
    isvc = resource("InferenceService")
    # Knative accepts one container port, and its canaryTrafficPercent means nothing elsewhere.
    assert len(ports()) > 1
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]


def test_pods_run_as_the_images_user_and_drain():
    context = server_container()["securityContext"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert context["runAsUser"] == int(re.findall(r"^USER (\d+)", dockerfile, re.M)[-1])
    assert context["runAsNonRoot"] is True
    # A read-only root needs somewhere to write: /tmp, an emptyDir.
    assert context["readOnlyRootFilesystem"] is True
    [mount] = server_container()["volumeMounts"]
    volumes = {volume["name"]: volume for volume in resource("ServingRuntime")["spec"]["volumes"]}
    assert mount["mountPath"] == "/tmp"
    assert "emptyDir" in volumes[mount["name"]]
    sleep, seconds = server_container()["lifecycle"]["preStop"]["exec"]["command"]
    serve_script = (ROOT / "deploy" / "serve.sh").read_text()
    graceful = int(re.search(r"GLASSBOX_GRACEFUL_SHUTDOWN_S:-(\d+)", serve_script).group(1))
    assert sleep == "sleep"
    grace = resource("InferenceService")["spec"]["predictor"]["terminationGracePeriodSeconds"]
    assert grace > int(seconds) + graceful
