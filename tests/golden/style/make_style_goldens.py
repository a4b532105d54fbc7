"""Regenerate tests/golden/style/*.npy from the committed models (run after `python -m export.convert_style`).

    PYTHONPATH=. .venv/bin/python tests/golden/style/make_style_goldens.py

Each golden is the pipeline's uint8 output for scikit-image's astronaut shrunk to GOLDEN_SIDE x GOLDEN_SIDE, for the
styles in GOLDEN_STYLES. tests/models/test_style_models.py compares against them within a level or two.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
GOLDEN_SIDE = 64
GOLDEN_STYLES = ("0", "7", "19", "3:0.7,11:0.3", "stylization", "pencil-sketch", "detail-enhance", "edge-preserving")


def golden_input() -> np.ndarray:
    import cv2
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="PNG")
    photo = np.asarray(Image.open(buffer).convert("RGB"))
    return np.ascontiguousarray(cv2.resize(photo, (GOLDEN_SIDE, GOLDEN_SIDE), interpolation=cv2.INTER_AREA))


def golden_file(style: str) -> Path:
    return HERE / f"astronaut{GOLDEN_SIDE}_{style.replace(':', '-').replace(',', '_')}.npy"


def main() -> int:
    from app.pipelines.style import Stylizer, load_catalogue
    from export.convert_style import cpu_runners

    models_dir = REPO_ROOT / "models"
    stylizer = Stylizer(cpu_runners(models_dir), load_catalogue(models_dir))
    image = golden_input()
    for style in GOLDEN_STYLES:
        np.save(golden_file(style), stylizer.stylize(image, style))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
