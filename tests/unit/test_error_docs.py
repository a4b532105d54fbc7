"""Every error code the service can answer is listed in the README's error table."""

from __future__ import annotations

import re

from app import errors, handlers
from tests.conftest import REPO_ROOT


def test_readme_lists_every_error_code() -> None:
    domain = {cls.code for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, errors.AtelierError)}
    http_layer = set(handlers._HTTP_CODES.values()) | {"HTTP_ERROR", "INTERNAL"}
    readme = REPO_ROOT.joinpath("README.md").read_text()
    table = set(re.findall(r"^\| (?:\d{3}|other) \| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert (domain | http_layer) - table == set()
