"""The OpenAPI document generates working clients. openapi-python-client (pinned in the dev extra) builds one
from a live server's /openapi.json; the test imports it and calls detect and verify with multipart and JSON
bodies, whose answers must equal what plain httpx gets from the same server. openapi-typescript (make openapi-ts,
pinned by tests/api/typescript/package-lock.json) generates types that a TypeScript caller must compile against."""

from __future__ import annotations

import base64
import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT, photo_bytes
from tests.hardening.conftest import live_server

# The generated package gets its own name: the title "Atelier" would make it `atelier_client`, the name of
# this project's own client package. No post hooks: formatting the generated code is not what is tested.
GENERATOR_CONFIG = ("package_name_override: atelier_generated\n"
                    "project_name_override: atelier-generated\npost_hooks: []\n")
GENERATE_TIMEOUT_S = 120
TYPESCRIPT_CHECK = Path(__file__).parent / "typescript"  # check.ts, tsconfig.json; package.json pins the tools
TYPESCRIPT_TOOLS = REPO_ROOT / ".cache" / "openapi-ts" / "node_modules"  # built by `make openapi-ts`


def without_timings(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "timings_ms"}


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="module")
def server_and_client(work_dir: Path) -> Iterator[tuple[str, ModuleType]]:
    work = work_dir
    with live_server() as (base, _):
        (work / "openapi.json").write_bytes(httpx.get(f"{base}/openapi.json", timeout=30).content)
        (work / "config.yaml").write_text(GENERATOR_CONFIG)
        generated = subprocess.run(
            [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(work / "openapi.json"),
             "--output-path", str(work / "client"), "--config", str(work / "config.yaml")],
            capture_output=True, text=True, timeout=GENERATE_TIMEOUT_S, check=False)
        assert generated.returncode == 0, generated.stdout + generated.stderr
        # The endpoints the test calls generated without warnings (image answers are left unparsed, by design).
        for operation in ("POST /v1/detect", "POST /v1/verify", "POST /v1/embed"):
            assert f"parsing {operation} " not in generated.stdout, generated.stdout
        sys.path.insert(0, str(work / "client"))
        try:
            package = importlib.import_module("atelier_generated")
            yield base, package
        finally:
            sys.path.remove(str(work / "client"))
            for name in [name for name in sys.modules if name.split(".")[0] == "atelier_generated"]:
                del sys.modules[name]


def test_every_generated_module_imports(server_and_client: tuple[str, ModuleType]) -> None:
    _, package = server_and_client
    root = Path(package.__file__).parent
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("atelier_generated", *path.relative_to(root).with_suffix("").parts))
        importlib.import_module(module.removesuffix(".__init__"))


def test_detect_multipart_and_json_match_httpx(server_and_client: tuple[str, ModuleType]) -> None:
    base, package = server_and_client
    detect = importlib.import_module("atelier_generated.api.faces.detect")
    models = importlib.import_module("atelier_generated.models")
    file_type = importlib.import_module("atelier_generated.types").File
    photo = photo_bytes("obama.jpg")
    expected = httpx.post(f"{base}/v1/detect", files={"image": ("obama.jpg", photo)},
                          data={"thresholds": "0.6,0.7,0.8", "max_faces": "1"}, timeout=120)
    assert expected.status_code == 200 and len(expected.json()["faces"]) == 1

    with package.Client(base_url=base, timeout=120, raise_on_unexpected_status=True) as client:
        form = detect.sync_detailed(client=client, body=models.DetectFilesBody(
            image=file_type(payload=photo, file_name="obama.jpg"), thresholds="0.6,0.7,0.8", max_faces=1))
        as_json = detect.sync_detailed(client=client, body=models.DetectJsonBody(
            image=base64.b64encode(photo).decode(), thresholds=[0.6, 0.7, 0.8], max_faces=1))
    for answer in (form, as_json):
        assert answer.status_code == 200
        assert isinstance(answer.parsed, models.DetectResponse)
        assert without_timings(answer.parsed.to_dict()) == without_timings(expected.json())


def test_verify_multipart_and_json_match_httpx(server_and_client: tuple[str, ModuleType]) -> None:
    base, package = server_and_client
    verify = importlib.import_module("atelier_generated.api.faces.verify")
    models = importlib.import_module("atelier_generated.models")
    file_type = importlib.import_module("atelier_generated.types").File
    a, b = photo_bytes("obama.jpg"), photo_bytes("obama2.jpg")
    expected = httpx.post(f"{base}/v1/verify", files={"image_a": ("a.jpg", a), "image_b": ("b.jpg", b)}, timeout=120)
    assert expected.status_code == 200 and expected.json()["verified"] is True

    with package.Client(base_url=base, timeout=120, raise_on_unexpected_status=True) as client:
        form = verify.sync_detailed(client=client, body=models.VerifyFilesBody(
            image_a=file_type(payload=a, file_name="a.jpg"), image_b=file_type(payload=b, file_name="b.jpg")))
        as_json = verify.sync_detailed(client=client, body=models.VerifyJsonBody(
            image_a=base64.b64encode(a).decode(), image_b=base64.b64encode(b).decode()))
        refused = verify.sync_detailed(client=client, body=models.VerifyJsonBody(
            image_a=base64.b64encode(a).decode(), image_b="bm90IGFuIGltYWdl"))
    for answer in (form, as_json):
        assert answer.status_code == 200
        assert isinstance(answer.parsed, models.VerifyResponse)
        assert without_timings(answer.parsed.to_dict()) == without_timings(expected.json())
    # Errors parse into the documented error model.
    assert refused.status_code == 422 and isinstance(refused.parsed, models.ErrorBody)
    assert refused.parsed.error.code == "INVALID_IMAGE"


def test_stylize_answers_the_image_bytes(server_and_client: tuple[str, ModuleType]) -> None:
    base, package = server_and_client
    stylize = importlib.import_module("atelier_generated.api.style_transfer.stylize")
    models = importlib.import_module("atelier_generated.models")
    file_type = importlib.import_module("atelier_generated.types").File
    with package.Client(base_url=base, timeout=120) as client:
        answer = stylize.sync_detailed(client=client, body=models.StylizeFilesBody(
            image=file_type(payload=photo_bytes("obama.jpg"), file_name="obama.jpg"), style="0", max_side=64,
            format_=models.StylizeFilesBodyFormat.JPEG))
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    assert answer.content[:3] == b"\xff\xd8\xff"


def test_typescript_types_compile(server_and_client: tuple[str, ModuleType], work_dir: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("Node is not installed: no TypeScript check")
    if not (TYPESCRIPT_TOOLS / ".bin" / "tsc").exists():
        pytest.skip("the TypeScript tools are not installed: make openapi-ts")
    project = work_dir / "typescript"
    shutil.copytree(TYPESCRIPT_CHECK, project, ignore=shutil.ignore_patterns("package*.json"))
    (project / "node_modules").symlink_to(TYPESCRIPT_TOOLS, target_is_directory=True)
    for command in (["openapi-typescript", str(work_dir / "openapi.json"), "-o", "schema.d.ts"], ["tsc", "-p", "."]):
        done = subprocess.run([str(TYPESCRIPT_TOOLS / ".bin" / command[0]), *command[1:]], cwd=project,
                              capture_output=True, text=True, timeout=GENERATE_TIMEOUT_S, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
