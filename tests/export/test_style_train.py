"""export/train_style.py: a short real training run on scikit-image photos, its ONNX export, the service serving it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from export.fetch import skimage_photo_png  # noqa: E402

CONTENT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
STYLE_PHOTO = "immunohistochemistry"  # a colourful, textured stained-tissue micrograph from scikit-image


def _save(name: str, folder: Path) -> Path:
    path = folder / f"{name}.png"
    path.write_bytes(skimage_photo_png(name))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    content = root / "content"
    content.mkdir()
    for name in CONTENT_PHOTOS:
        _save(name, content)
    return _save(STYLE_PHOTO, root), content


def test_gram_matrix_and_tv() -> None:
    from export.train_style import gram_matrix, total_variation

    features = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    gram = gram_matrix(features)
    flat = features[0].reshape(3, 4)
    torch.testing.assert_close(gram[0], flat @ flat.T / 12)
    assert float(total_variation(torch.ones(1, 3, 8, 8))) == 0.0
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    assert float(total_variation(ramp)) == pytest.approx(1.0)


def test_vgg_checkpoint_loads_through_restricted_unpickler() -> None:
    import pickle

    from export.lpips_vgg import load_numpy_pickle, vgg16_conv_weights

    with pytest.raises(pickle.UnpicklingError):
        load_numpy_pickle(pickle.dumps({"a": print}))
    layers = vgg16_conv_weights()
    assert [w.shape[0] for w, _ in layers] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert layers[0][0].shape == (64, 3, 3, 3)


@pytest.mark.slow
def test_training_smoke_style_loss_falls_and_export_matches(photos: tuple[Path, Path], tmp_path: Path) -> None:
    from app.pipelines.style import Stylizer, load_catalogue
    from export.convert_style import cpu_runners
    from export.train_style import LossWeights, TrainConfig, publish, train

    style_image, content_dir = photos
    models_dir = tmp_path / "models"
    config = TrainConfig(style_image=style_image, content_dir=content_dir, name="smoke-test", image_size=48,
                         steps=30, batch_size=2, weights=LossWeights(), lr=1e-3, checkpoint_interval=15,
                         workdir=tmp_path / "work", progress=False)
    net, history = train(config)
    assert len(history) == 30
    # Seen on 64 px crops: 1.3e9 at the first step, about 5e6 after 40 steps.
    first, last = history[0]["style"], float(np.mean([h["style"] for h in history[-5:]]))
    assert last < 0.1 * first, f"style loss only went from {first:.3g} to {last:.3g}"
    assert (tmp_path / "work" / "smoke-test" / "checkpoint.pt").exists()

    entry = publish(net, config, history, models_dir)  # raises ParityError unless the ONNX matches PyTorch
    measured = entry["parity"]["export_vs_torch"]
    assert measured["atol"] == 1e-4 and measured["max_abs_diff"] <= measured["atol"]
    assert entry["inputs"][0]["shape"] == ["batch", 3, "height", "width"]

    # The exported file itself against PyTorch on a real photo of another size.
    import onnxruntime as ort

    from export.nets.transformer_net import ClampedOutput

    photo = np.asarray(Image.open(io.BytesIO(skimage_photo_png("chelsea"))).convert("RGB"))[:300, :448]
    x = photo.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    session = ort.InferenceSession(str(models_dir / entry["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x})[0]
    with torch.no_grad():
        expected = ClampedOutput(net)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)

    # The service's pipeline lists and serves the new style from the models folder.
    catalogue = load_catalogue(models_dir)
    stylizer = Stylizer(cpu_runners(models_dir), catalogue)
    assert "smoke-test" in {s["id"] for s in stylizer.list_styles()}
    out = stylizer.stylize(photo[:101, :77], "smoke-test")
    assert out.shape == (101, 77, 3)
    assert (models_dir / "styles" / "previews" / "smoke-test.jpg").exists()
    assert json.loads((models_dir / "manifest.json").read_text())["models"][0]["id"] == "style-trained-smoke-test"


@pytest.mark.slow
def test_training_resumes_from_checkpoint(photos: tuple[Path, Path], tmp_path: Path) -> None:
    from export.train_style import TrainConfig, train

    style_image, content_dir = photos
    common = dict(style_image=style_image, content_dir=content_dir, name="resume", image_size=32, batch_size=1,
                  checkpoint_interval=3, workdir=tmp_path, progress=False)
    _, first = train(TrainConfig(steps=3, **common))  # type: ignore[arg-type]
    net, second = train(TrainConfig(steps=5, resume=True, **common))  # type: ignore[arg-type]
    assert len(first) == 3 and len(second) == 2
    state = torch.load(tmp_path / "resume" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 5
