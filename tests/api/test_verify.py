"""POST /v1/verify and POST /v1/embed through HTTP, on real photographs."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.pipelines.verify import DEFAULT_THRESHOLD
from tests.conftest import photo_bytes


def verify(client: TestClient, a: str, b: str, **options: object) -> object:
    files = {"image_a": (a, photo_bytes(a)), "image_b": (b, photo_bytes(b))}
    return client.post("/v1/verify", files=files, data={k: str(v) for k, v in options.items()})


def test_same_person_is_verified(client: TestClient) -> None:
    body = verify(client, "obama.jpg", "obama2.jpg").json()  # type: ignore[attr-defined]
    # shared/WEIGHTS.md: dlib's own Obama-Obama cosines are 0.95-0.97
    assert body["verified"] is True and body["similarity"] > 0.93
    assert body["threshold"] == DEFAULT_THRESHOLD
    assert math.isclose(body["distance"], math.sqrt(2 - 2 * body["similarity"]), rel_tol=1e-5)
    assert set(body["faces"]) == {"a", "b"} and len(body["faces"]["a"]["box"]) == 4
    assert body["model"].startswith("dlib-face-resnet")


def test_different_people_are_not_verified(client: TestClient) -> None:
    body = verify(client, "obama.jpg", "biden.jpg").json()  # type: ignore[attr-defined]
    # shared/WEIGHTS.md: dlib's Obama-Biden cosines are 0.80-0.83
    assert body["verified"] is False and body["similarity"] < 0.88


def test_threshold_option_changes_only_the_decision(client: TestClient) -> None:
    default = verify(client, "obama.jpg", "biden.jpg").json()  # type: ignore[attr-defined]
    lenient = verify(client, "obama.jpg", "biden.jpg", threshold=0.5).json()  # type: ignore[attr-defined]
    assert lenient["similarity"] == default["similarity"]
    assert lenient["verified"] is True and lenient["threshold"] == 0.5


def test_json_body(client: TestClient) -> None:
    payload = {name: base64.b64encode(photo_bytes(photo)).decode()
               for name, photo in (("image_a", "obama.jpg"), ("image_b", "obama3.jpg"))}
    response = client.post("/v1/verify", json={**payload, "face": "best_match"})
    assert response.status_code == 200 and response.json()["verified"] is True


def test_best_match_finds_the_face_among_several(client: TestClient) -> None:
    # obama.jpg holds the face plus a false positive (WEIGHTS.md); best_match must pair the real faces.
    largest = verify(client, "obama.jpg", "obama2.jpg").json()  # type: ignore[attr-defined]
    best = verify(client, "obama.jpg", "obama2.jpg", face="best_match").json()  # type: ignore[attr-defined]
    assert best["similarity"] >= largest["similarity"] - 1e-6 and best["verified"] is True


def test_best_match_on_a_collage_of_two_people(client: TestClient) -> None:
    import io

    from PIL import Image

    left = Image.open(io.BytesIO(photo_bytes("biden.jpg"))).convert("RGB")
    right = Image.open(io.BytesIO(photo_bytes("obama2.jpg"))).convert("RGB")
    left.thumbnail((400, 400))  # keeps the aspect ratio: a squashed face is another face
    right.thumbnail((400, 400))
    collage = Image.new("RGB", (800, 400))
    collage.paste(left, (0, 0))
    collage.paste(right, (400, 0))
    buffer = io.BytesIO()
    collage.save(buffer, format="PNG")
    files = {"image_a": ("collage.png", buffer.getvalue()), "image_b": ("obama.jpg", photo_bytes("obama3.jpg"))}
    body = client.post("/v1/verify", files=files, data={"face": "best_match"}).json()
    assert body["verified"] is True
    assert body["faces"]["a"]["box"][0] >= 400  # the matched face is Obama's, on the right half


@pytest.mark.parametrize("which,a,b", [("image_a", "coffee", "obama.jpg"), ("image_b", "obama.jpg", "coffee")])
def test_no_face_names_the_image(client: TestClient, which: str, a: str, b: str) -> None:
    response = verify(client, a, b)
    assert response.status_code == 422  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == "NO_FACE" and which in error["message"]


def test_verify_needs_both_images(client: TestClient) -> None:
    response = client.post("/v1/verify", files={"image_a": ("a.jpg", photo_bytes("obama.jpg"))})
    assert response.status_code == 422 and response.json()["error"]["code"] == "MISSING_FIELD"
    assert "image_b" in response.json()["error"]["message"]
    raw = client.post("/v1/verify", content=photo_bytes("obama.jpg"), headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 415


def test_embed_returns_unit_vectors_per_face(client: TestClient) -> None:
    response = client.post("/v1/embed", files={"image": ("a.png", photo_bytes("astronaut"))})
    assert response.status_code == 200
    body = response.json()
    assert body["dimensions"] == 128 and len(body["faces"]) == 1
    vector = np.array(body["faces"][0]["embedding"])
    assert vector.shape == (128,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert set(body["faces"][0]) == {"box", "score", "landmarks", "embedding"}


def test_embed_max_faces_and_no_face(client: TestClient) -> None:
    capped = client.post("/v1/embed", files={"image": ("o.jpg", photo_bytes("obama.jpg"))},
                         data={"max_faces": "1"}).json()
    assert len(capped["faces"]) == 1
    empty = client.post("/v1/embed", files={"image": ("c.png", photo_bytes("coffee"))}).json()
    assert empty["faces"] == []


def test_embeddings_agree_with_verify(client: TestClient) -> None:
    def first(name: str) -> np.ndarray:
        body = client.post("/v1/embed", files={"image": (name, photo_bytes(name))}, data={"max_faces": "1"}).json()
        return np.array(body["faces"][0]["embedding"])

    similarity = float(first("obama.jpg") @ first("obama2.jpg"))
    body = verify(client, "obama.jpg", "obama2.jpg").json()  # type: ignore[attr-defined]
    assert abs(similarity - body["similarity"]) < 1e-5
