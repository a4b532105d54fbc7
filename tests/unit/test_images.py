"""The container images and the compose file. The images can start: the GPU image's CUDA matches its
onnxruntime-gpu wheel, and every image runs the Python minor the project is developed and tested on. The
compose file lets the drain finish and checks health on the port the server listens on.

Without a Docker engine nothing is built here, so this reads what decides it: the Dockerfile's base image tags
and ARGs, pyproject's pin, and the pinned wheel's own metadata as pip resolves it (the Makefile's
gpu-wheel-metadata target writes it to .cache/gpu-wheel/; make test runs that first). onnxruntime-gpu built
for another CUDA major than the image ships falls back to the CPU silently, and ATELIER_REQUIRE_GPU then
refuses to start.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
import yaml

from app.config import Settings
from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
PYPROJECT = REPO_ROOT / "pyproject.toml"
REPORTS = REPO_ROOT / ".cache" / "gpu-wheel"


class ImageMismatch(AssertionError):
    pass


def dockerfile_args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+(\w+)=(\S+)\s*$", text, flags=re.MULTILINE))


def cuda_major_of_image(tag: str) -> int:
    """nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 -> 13."""
    match = re.fullmatch(r"(?:[\w.-]+/)*cuda:(\d+)\.\d+(?:\.\d+)?-.*", tag)
    if match is None:
        raise ImageMismatch(f"{tag!r} is not an nvidia/cuda image tag with a version")
    return int(match.group(1))


def cuda_major_of_wheel(metadata: dict[str, Any]) -> int:
    """The CUDA major the wheel was built for, from its own requirement on the CUDA runtime."""
    for requirement in metadata.get("requires_dist", []):
        match = re.match(r"nvidia-cuda-runtime(?:-cu(\d+))?\s*(?:~=|==|>=)\s*(\d+)", requirement)
        if match:
            return int(match.group(1) or match.group(2))
    raise ImageMismatch(f"{metadata.get('name')} {metadata.get('version')} names no nvidia-cuda-runtime requirement")


def python_tag_of_wheel(url: str) -> str:
    """.../onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl -> '3.11'."""
    match = re.search(r"-cp(\d)(\d+)-", url.rsplit("/", 1)[-1])
    if match is None:
        raise ImageMismatch(f"{url} is not a CPython wheel")
    return f"{match.group(1)}.{match.group(2)}"


def check_gpu_image(dockerfile: str, pin: str, report: dict[str, Any]) -> None:
    """Raise ImageMismatch unless the GPU stage's CUDA major and Python minor are those of the pinned wheel."""
    args = dockerfile_args(dockerfile)
    install = report["install"][0]
    metadata = install["metadata"]
    if metadata["version"] != pin:
        raise ImageMismatch(f"metadata is for onnxruntime-gpu {metadata['version']}, the pin is {pin}")
    image_major, wheel_major = cuda_major_of_image(args["CUDA_IMAGE"]), cuda_major_of_wheel(metadata)
    if image_major != wheel_major:
        raise ImageMismatch(f"the GPU image has CUDA {image_major} ({args['CUDA_IMAGE']}), onnxruntime-gpu {pin} "
                            f"needs CUDA {wheel_major}")
    wheel_python = python_tag_of_wheel(install["download_info"]["url"])
    if wheel_python != args["PYTHON_VERSION"]:
        raise ImageMismatch(f"the wheel is for Python {wheel_python}, the GPU image runs {args['PYTHON_VERSION']}")


def gpu_pin() -> str:
    gpu = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["gpu"]
    pins = [re.fullmatch(r"onnxruntime-gpu==([\w.]+)", requirement) for requirement in gpu]
    found = [m.group(1) for m in pins if m]
    assert len(found) == 1, f"the gpu extra must pin onnxruntime-gpu exactly, got {gpu}"
    return found[0]


def test_every_image_and_the_tools_run_one_python_minor() -> None:
    args = dockerfile_args(DOCKERFILE.read_text())
    minor = args["PYTHON_VERSION"]
    assert args["PYTHON_IMAGE"].startswith(f"python:{minor}-"), (args["PYTHON_IMAGE"], minor)
    project = tomllib.loads(PYPROJECT.read_text())
    assert project["tool"]["mypy"]["python_version"] == minor
    assert project["tool"]["ruff"]["target-version"] == "py" + minor.replace(".", "")
    assert re.search(r"\buv python install \"\$\{PYTHON_VERSION\}\"", DOCKERFILE.read_text())  # the GPU stage


def test_gpu_image_matches_the_pinned_wheel() -> None:
    pin = gpu_pin()
    minor = dockerfile_args(DOCKERFILE.read_text())["PYTHON_VERSION"]
    report_path = REPORTS / f"onnxruntime-gpu-{pin}-py{minor}.json"
    if not report_path.exists():
        pytest.fail(f"{report_path} is missing: `make gpu-wheel-metadata` resolves it (make test does)")
    check_gpu_image(DOCKERFILE.read_text(), pin, json.loads(report_path.read_text()))


def _report(version: str, requirement: str, wheel: str) -> dict[str, Any]:
    return {"install": [{"metadata": {"name": "onnxruntime-gpu", "version": version,
                                      "requires_dist": ["numpy>=1.21.6", f"{requirement}; extra == \"cuda\""]},
                         "download_info": {"url": f"https://example.invalid/{wheel}"}}]}


DOCKERFILE_13 = "ARG PYTHON_VERSION=3.11\nARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04\n"


def test_the_check_catches_each_mismatch() -> None:
    good = _report("1.31.1", "nvidia-cuda-runtime~=13.0",
                   "onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl")
    check_gpu_image(DOCKERFILE_13, "1.31.1", good)
    # The defect this guards against: a CUDA 12 image under a wheel built for CUDA 13.
    with pytest.raises(ImageMismatch, match="CUDA 12.*needs CUDA 13"):
        check_gpu_image(DOCKERFILE_13.replace("13.0.1", "12.8.1"), "1.31.1", good)
    older = _report("1.22.0", "nvidia-cuda-runtime-cu12~=12.0", "onnxruntime_gpu-1.22.0-cp311-cp311-x.whl")
    with pytest.raises(ImageMismatch, match="CUDA 13.*needs CUDA 12"):
        check_gpu_image(DOCKERFILE_13, "1.22.0", older)
    with pytest.raises(ImageMismatch, match="Python 3.12"):
        check_gpu_image(DOCKERFILE_13, "1.31.1", _report("1.31.1", "nvidia-cuda-runtime~=13.0",
                                                          "onnxruntime_gpu-1.31.1-cp312-cp312-x.whl"))
    with pytest.raises(ImageMismatch, match="the pin is"):
        check_gpu_image(DOCKERFILE_13, "1.30.0", good)
    with pytest.raises(ImageMismatch, match="not an nvidia/cuda image"):
        check_gpu_image(DOCKERFILE_13.replace("nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04", "ubuntu:24.04"),
                        "1.31.1", good)


def test_compose_lets_the_drain_finish_and_checks_health_on_the_configured_port() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    grace = Settings(warmup=False).shutdown_grace_s
    for name, service in compose["services"].items():
        seconds = int(str(service["stop_grace_period"]).removesuffix("s"))
        assert seconds > grace, (name, seconds, grace)  # Docker's SIGKILL must come after the drain
        assert service["healthcheck"]["test"] == ["CMD", "atelier", "healthcheck"], name
        assert service["environment"]["ATELIER_PORT"] == "${ATELIER_PORT:-8000}", name
    healthchecks = re.findall(r"^\s+CMD \[(.*)\]$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert healthchecks == ['"atelier", "healthcheck"'] * 2
