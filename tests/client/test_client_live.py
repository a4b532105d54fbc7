"""atelier_client against a live server: every endpoint through Client and AsyncClient, typed results, the API's
errors as typed exceptions, every kind of image input."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import atelier_client as ac
import numpy as np
import pytest
from PIL import Image

from tests.client.conftest import API_KEY, MAX_UPLOAD_BYTES


@pytest.fixture(scope="module")
def client(server_url: str) -> ac.Client:
    with ac.Client(server_url, api_key=API_KEY) as atelier:
        yield atelier


def check_face(face: ac.Face) -> None:
    x1, y1, x2, y2 = face.box
    assert x2 > x1 and y2 > y1 and 0.9 < face.score <= 1.0
    assert isinstance(face.landmarks, ac.Landmarks) and len(face.landmarks.nose) == 2


def test_every_endpoint_sync(client: ac.Client, photos: dict[str, Path]) -> None:
    assert client.health() == ac.Health(status="ok")
    ready = client.ready()
    assert isinstance(ready, ac.Readiness) and ready.ready and not ready.draining and ready.models >= 5

    detected = client.detect(photos["obama.jpg"], min_face_size=40)
    assert isinstance(detected, ac.DetectResult) and (detected.width, detected.height) == (910, 1137)
    assert len(detected.faces) == 1 and detected.request_id and detected.timings_ms["total"] > 0
    check_face(detected.faces[0])

    drawn = client.annotate(photos["obama.jpg"], max_faces=1)
    assert drawn.media_type == "image/png" and Image.open(io.BytesIO(drawn.content)).size == (910, 1137)

    embedded = client.embed(photos["obama2.jpg"])
    assert isinstance(embedded, ac.EmbedResult) and embedded.dimensions == 128
    vector = np.array(embedded.faces[0].embedding)
    assert vector.shape == (128,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    check_face(embedded.faces[0])

    same = client.verify(photos["obama.jpg"], photos["obama2.jpg"])
    other = client.verify(photos["obama.jpg"], photos["biden.jpg"], face="best_match", threshold=0.95)
    assert isinstance(same, ac.VerifyResult) and same.verified and same.similarity >= same.threshold
    assert not other.verified and other.threshold == 0.95
    check_face(same.faces.a)

    styles = client.styles()
    assert all(isinstance(s, ac.Style) for s in styles) and {s.kind for s in styles} >= {"multi-style", "filter"}
    with_preview = next(s for s in styles if s.preview_url)
    preview = client.style_preview(with_preview.id)
    assert preview.media_type.startswith("image/") and Image.open(io.BytesIO(preview.content)).width > 0

    painted = client.stylize(photos["obama2.jpg"], "19", strength=0.8, max_side=256, format="jpeg", quality=80)
    assert painted.style == "19" and painted.media_type == "image/jpeg" and painted.extension == "jpeg"
    assert Image.open(io.BytesIO(painted.content)).size == Image.open(photos["obama2.jpg"]).size
    assert painted.timings_ms["inference"] > 0
    arbitrary = client.stylize(photos["obama2.jpg"], style_image=photos["biden.jpg"], max_side=256)
    assert arbitrary.style == "arbitrary" and arbitrary.media_type == "image/png"

    models = client.models()
    assert all(isinstance(m, ac.ModelInfo) for m in models)
    assert any(m.loaded and m.active_provider for m in models)
    assert all(isinstance(t, ac.TensorContract) for m in models for t in m.inputs)


def test_every_endpoint_async(server_url: str, photos: dict[str, Path]) -> None:
    async def scenario() -> None:
        async with ac.AsyncClient(server_url, api_key=API_KEY) as atelier:
            health, ready, styles, models = await asyncio.gather(
                atelier.health(), atelier.ready(), atelier.styles(), atelier.models())
            assert health.status == "ok" and ready.ready and styles and models
            detected, embedded, verified = await asyncio.gather(
                atelier.detect(photos["obama.jpg"], min_face_size=40), atelier.embed(photos["biden.jpg"]),
                atelier.verify(photos["obama.jpg"], photos["obama2.jpg"]))
            assert len(detected.faces) == 1 and embedded.dimensions == 128 and verified.verified
            painted = await atelier.stylize(photos["obama2.jpg"], styles[0].id, max_side=128, format="webp")
            assert painted.media_type == "image/webp"
            drawn = await atelier.annotate(photos["obama.jpg"])
            preview = await atelier.style_preview(styles[0].id)
            assert drawn.media_type == "image/png" and preview.content
            with pytest.raises(ac.UnknownStyle):
                await atelier.stylize(photos["obama2.jpg"], "no-such-style")

    asyncio.run(scenario())


def test_input_kinds_give_the_same_answer(client: ac.Client, photos: dict[str, Path]) -> None:
    path = photos["obama.jpg"]
    rgb = Image.open(path).convert("RGB")
    expected = client.detect(path, min_face_size=40).faces
    with path.open("rb") as handle:
        kinds = [str(path), path.read_bytes(), handle, rgb, np.asarray(rgb), np.asarray(rgb)[:, ::-1][:, ::-1],
                 np.asarray(rgb.convert("RGBA")), np.asarray(rgb.convert("L"))]
        answers = [client.detect(kind, min_face_size=40).faces for kind in kinds]
    for faces in answers[:-1]:  # the same pixels every way they are sent
        assert len(faces) == 1
        assert np.allclose(faces[0].box, expected[0].box, atol=1e-3)
    assert len(answers[-1]) == 1  # grayscale: other pixels, the same face


def test_bad_arrays_are_refused_before_sending(client: ac.Client) -> None:
    with pytest.raises(ValueError, match="uint8"):
        client.detect(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        client.detect(np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(TypeError):
        client.detect(42)


@pytest.mark.parametrize(("call", "error", "status"), [
    (lambda c: c.detect(b"not an image"), ac.InvalidImage, 422),
    (lambda c: c.stylize(b"x", "no-such-style"), ac.UnknownStyle, 404),
    (lambda c: c.detect(b"\xff" * (MAX_UPLOAD_BYTES + 1)), ac.PayloadTooLarge, 413),
    (lambda c: c.detect(b"", min_face_size=3), ac.InvalidParameter, 422),
    (lambda c: c.style_preview("no-such-style"), ac.UnknownStyle, 404),
])
def test_errors_are_typed(client: ac.Client, call: object, error: type[ac.AtelierError], status: int) -> None:
    with pytest.raises(error) as raised:
        call(client)  # type: ignore[operator]
    assert raised.value.status == status and raised.value.code == error.code
    assert raised.value.message and raised.value.request_id and len(raised.value.request_id) == 32
    assert isinstance(raised.value, ac.AtelierError)


def test_a_wrong_or_missing_key_is_unauthorized(server_url: str, photos: dict[str, Path]) -> None:
    for key in ("", "wrong"):
        with ac.Client(server_url, api_key=key) as anonymous:
            with pytest.raises(ac.Unauthorized) as raised:
                anonymous.detect(photos["obama.jpg"])
            assert raised.value.status == 401 and raised.value.request_id
            assert anonymous.health().status == "ok"  # health stays open


def test_url_and_key_from_the_environment(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_URL", server_url)
    monkeypatch.setenv("ATELIER_API_KEY", API_KEY)
    with ac.Client() as atelier:
        assert atelier.base_url == server_url and atelier.styles()
