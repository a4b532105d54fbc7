"""POST /v1/detect: the response contract, parameters and their errors, the annotated image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import photo_bytes

LANDMARKS = {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}


def post(client: TestClient, name: str, **options: object) -> object:
    return client.post("/v1/detect", files={"image": (name, photo_bytes(name), "application/octet-stream")},
                       data={k: str(v) for k, v in options.items()})


def test_astronaut_has_one_face_with_landmarks(client: TestClient) -> None:
    response = post(client, "astronaut")
    assert response.status_code == 200  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert (body["width"], body["height"]) == (512, 512)
    (face,) = body["faces"]
    x1, y1, x2, y2 = face["box"]
    # shared/WEIGHTS.md: facenet-pytorch finds the astronaut's face at about [181, 62, 268, 172], p = 1.000
    assert abs(x1 - 181) < 4 and abs(y1 - 62) < 4 and abs(x2 - 268) < 4 and abs(y2 - 172) < 4
    assert face["score"] > 0.99
    assert set(face["landmarks"]) == LANDMARKS
    left, right = face["landmarks"]["left_eye"], face["landmarks"]["right_eye"]
    assert left[0] < right[0]  # 'left' is the image's left
    assert x1 < left[0] < x2 and y1 < left[1] < y2
    assert body["model"].startswith("mtcnn")
    assert {"decode", "total"} <= set(body["timings_ms"])


def test_no_face_is_an_empty_list(client: TestClient) -> None:
    response = post(client, "coffee")
    assert response.status_code == 200 and response.json()["faces"] == []  # type: ignore[attr-defined]


def test_faces_sorted_by_score_and_max_faces(client: TestClient) -> None:
    everything = post(client, "obama.jpg", thresholds="0.5,0.5,0.5").json()  # type: ignore[attr-defined]
    scores = [face["score"] for face in everything["faces"]]
    assert scores == sorted(scores, reverse=True)
    if len(scores) > 1:
        (largest,) = post(client, "obama.jpg", thresholds="0.5,0.5,0.5", max_faces=1).json()["faces"]  # type: ignore[attr-defined]
        areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in everything["faces"]]
        assert (largest["box"][2] - largest["box"][0]) * (largest["box"][3] - largest["box"][1]) == max(areas)


def test_json_options(client: TestClient) -> None:
    import base64

    data = base64.b64encode(photo_bytes("obama.jpg")).decode()
    response = client.post("/v1/detect", json={"image": data, "thresholds": [0.6, 0.7, 0.7], "min_face_size": 40})
    assert response.status_code == 200 and len(response.json()["faces"]) >= 1


@pytest.mark.parametrize("options", [
    {"min_face_size": 11}, {"min_face_size": "big"}, {"scale_factor": 0.99}, {"scale_factor": 0.05},
    {"thresholds": "0.6,0.7"}, {"thresholds": "0.6,0.7,1.5"}, {"max_faces": 0}, {"unknown_option": 1},
])
def test_invalid_parameters(client: TestClient, options: dict[str, object]) -> None:
    response = post(client, "astronaut", **options)
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert response.json()["error"]["code"] == "INVALID_PARAMETER"  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["accept", "query"])
def test_annotated_png(client: TestClient, how: str) -> None:
    data = photo_bytes("astronaut")
    if how == "accept":
        response = client.post("/v1/detect", files={"image": ("a.png", data, "image/png")},
                               headers={"Accept": "image/png"})
    else:
        response = client.post("/v1/detect?annotate=true", files={"image": ("a.png", data, "image/png")})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-faces"] == "1"
    drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert drawn.shape == original.shape and (drawn != original).any()


def test_the_service_runs_mtcnn_single_threaded_sessions_from_parallel_workers(served_settings: object) -> None:
    """app.service.load_registry: MTCNN's sessions get one intra-op thread, the detector one worker per thread."""
    from app.config import Settings
    from app.main import create_app

    assert isinstance(served_settings, Settings)
    settings = served_settings.model_copy(update={"warmup": False, "intra_op_threads": 3})
    app = create_app(settings)
    with TestClient(app):
        service = app.state.service
        assert service.pipelines.detector.workers == 3
        for model_id in ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet"):
            model = service.registry.get(model_id)
            assert model.threads == 1 and model.session.get_session_options().intra_op_num_threads == 1
        assert service.registry.get("dlib-face-resnet").threads == 3
