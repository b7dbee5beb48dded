"""``babyemo serve``'s API with FastAPI's TestClient: the rows and CSV equal those of
``babyemo predict`` for the same files, limits answer 413/422 with JSON bodies, the token
is checked, bad files are error rows (never a 500)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from babyemo.cli import app as cli_app  # noqa: E402
from babyemo.faces import Face, register_detector  # noqa: E402
from babyemo.prediction import Predictor  # noqa: E402
from babyemo.runtime import Runtime  # noqa: E402
from babyemo.serve import ServeSettings, create_app  # noqa: E402
from tests.conftest import make_checkpoint, make_image  # noqa: E402

TWO_FACES = "serve_test_two_faces"
RT = Runtime(precision="fp32", readers=1)


class _TwoFaces:
    """Two faces side by side in a photo wider than tall; none in a square one."""

    name = TWO_FACES

    def detect(self, image: Image.Image) -> list[Face]:
        w, h = image.size
        if w <= h:
            return []
        marks = (w * 0.1, h * 0.4)
        return [Face(box=(w * 0.05, h * 0.2, w * 0.4, h * 0.6), score=0.9,
                     landmarks=(marks,) * 5),
                Face(box=(w * 0.55, h * 0.2, w * 0.4, h * 0.6), score=0.8,
                     landmarks=(marks,) * 5)]


register_detector(TWO_FACES, description="test: two faces in wide photos")(_TwoFaces)


@pytest.fixture
def model(tiny_arch: str, tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "model.pt", tiny_arch, temperature=1.5)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    make_image(folder / "a.png", color=(200, 40, 40), size=(40, 30))
    make_image(folder / "b.jpg", color=(40, 40, 220), size=(30, 30))
    make_image(folder / "c.webp", color=(40, 200, 40), size=(64, 48))
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (folder / "notes.jpg").write_text("not an image at all\n")
    return folder


NAMES = ["a.png", "b.jpg", "c.webp", "bad.jpg", "notes.jpg"]


def _client(model: Path, faces: str = "none", **kw) -> TestClient:
    settings = ServeSettings(checkpoint=str(model), runtime=RT, faces=faces, **kw)
    return TestClient(create_app(settings))


def _files(folder: Path, names=NAMES) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (n, (folder / n).read_bytes())) for n in names]


def _cli(args: list[str]) -> str:
    result = CliRunner().invoke(cli_app, ["-q", "predict", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _cli_json(folder: Path, model: Path, faces: str, extra=()) -> list[dict]:
    out = folder.parent / f"cli-{faces}.json"
    _cli([*(str(folder / n) for n in NAMES), "--checkpoint", str(model), "--faces", faces,
          "--precision", "fp32", "--json", str(out), *extra])
    rows = json.loads(out.read_text())
    for row in rows:
        row["path"] = Path(row["path"]).name
    return rows


@pytest.mark.parametrize("faces", ["none", TWO_FACES])
def test_predict_rows_equal_the_cli_json(model, photos, faces):
    with _client(model, faces) as client:
        response = client.post("/v1/predict", files=_files(photos))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "model" and body["class_names"] == ["angry", "crying", "happy"]
    rows = body["rows"]
    sizes = {r["path"]: r.pop("image_size") for r in rows}
    expected = _cli_json(photos, model, faces)
    assert [r["path"] for r in rows] == [r["path"] for r in expected]
    for got, want in zip(rows, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            if key == "probs":
                assert got[key] == pytest.approx(want[key], abs=1e-6)
            elif isinstance(want[key], float):
                assert got[key] == pytest.approx(want[key], abs=1e-6)
            else:
                assert got[key] == want[key], key
    assert sizes["a.png"] == [40, 30] and sizes["c.webp"] == [64, 48]
    assert sizes["bad.jpg"] is None and sizes["notes.jpg"] is None
    errors = {r["path"]: r["error"] for r in rows if r["error"]}
    assert errors == {"bad.jpg": "truncated", "notes.jpg": "not_an_image"}
    if faces == TWO_FACES:  # two faces in each wide photo, the square one classified whole
        assert [r["path"] for r in rows].count("a.png") == 2
        assert [r["face"] for r in rows if r["path"] == "b.jpg"] == ["whole_image"]
        first = next(r for r in rows if r["path"] == "c.webp")
        assert first["box"] == pytest.approx([3.2, 9.6, 25.6, 28.8])
        assert first["face_index"] == 0 and first["det_score"] == pytest.approx(0.9)


def test_predict_csv_equals_the_cli_csv(model, photos):
    with _client(model, TWO_FACES, min_confidence=0.5) as client:
        response = client.post("/v1/predict.csv", files=_files(photos))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    out = photos.parent / "cli.csv"
    _cli([*(str(photos / n) for n in NAMES), "--checkpoint", str(model), "--faces", TWO_FACES,
          "--precision", "fp32", "--min-confidence", "0.5", "--csv", str(out)])
    with open(out, newline="") as f:
        want = list(csv.reader(f))
    got = list(csv.reader(io.StringIO(response.text)))
    for row in want[1:]:
        row[0] = Path(row[0]).name
    assert "top_class" in got[0] and got == want


def test_health_and_models(model):
    with _client(model, TWO_FACES) as client:
        assert client.get("/v1/health").json() == {"status": "ok", "model": "model"}
        models = client.get("/v1/models").json()
        assert models == {"default": "model", "models": [{
            "name": "model", "arch": "tiny_test_cnn", "class_names": ["angry", "crying", "happy"],
            "input_size": 24, "faces": TWO_FACES, "temperature": 1.5}]}
        assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "hint"} and body["error"] == code
    assert "Traceback" not in response.text
    return body


def test_limits_answer_json_errors(model, photos):
    with _client(model, max_files=3, max_bytes=5000, max_pixels=40 * 40) as client:
        _assert_error(client.post("/v1/predict", files=[("photo", ("a.png", b"x"))]), 422,
                      "no_files")
        _assert_error(client.post("/v1/predict", data={"x": "1"}), 422, "bad_form")
        _assert_error(client.post("/v1/predict", content=b"{}",
                                  headers={"content-type": "application/json"}), 422, "bad_form")
        _assert_error(client.post("/v1/predict", content=b"--zz\r\ngarbage",
                                  headers={"content-type": "multipart/form-data; boundary=zz"}),
                      422, "bad_form")
        four = _files(photos, ["a.png"] * 4)
        _assert_error(client.post("/v1/predict", files=four), 422, "too_many_files")
        big = [("files", ("big.png", b"\x00" * 6000))]
        _assert_error(client.post("/v1/predict", files=big), 413, "request_too_large")
        buf = io.BytesIO()
        Image.new("RGB", (41, 40)).save(buf, format="PNG")
        body = _assert_error(client.post("/v1/predict", files=[("files", ("wide.png",
                             buf.getvalue()))]), 413, "too_many_pixels")
        assert "1,640 pixels" in body["detail"]
        _assert_error(client.get("/v1/nothing"), 404, "not_found")
        _assert_error(client.get("/v1/predict"), 405, "method_not_allowed")
        ok = client.post("/v1/predict", files=_files(photos, ["a.png", "b.jpg"]))
        assert ok.status_code == 200 and len(ok.json()["rows"]) == 2


def test_bad_files_are_error_rows(model):
    junk = [("files", ("empty.jpg", b"")), ("files", ("html.png", b"<!doctype html><p>x")),
            ("files", ("", b"GIF89a\x00")), ("files", ("../../etc/passwd", b"\x89PNG\r\n\x1a\n"))]
    with _client(model) as client:
        response = client.post("/v1/predict", files=junk)
    assert response.status_code == 200
    rows = response.json()["rows"]
    assert [r["error"] for r in rows] == ["empty_file", "not_an_image", "truncated",
                                          "truncated"]
    assert all(r["label"] is None and r["image_size"] is None for r in rows)
    assert rows[2]["path"] == "upload-3" and rows[3]["path"] == "../../etc/passwd"


def test_token_is_required(model, photos):
    with _client(model, token="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            _assert_error(client.get("/v1/health", headers=headers), 401, "unauthorized")
            _assert_error(client.post("/v1/predict", files=_files(photos, ["a.png"]),
                                      headers=headers), 401, "unauthorized")
        good = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/health", headers=good).status_code == 200
        response = client.post("/v1/predict.csv", files=_files(photos, ["a.png"]), headers=good)
        assert response.status_code == 200 and response.text.startswith("path,")


def test_page_is_served_or_a_json_404(model):
    from babyemo.serve.app import page_html

    with _client(model, token="t") as client:
        response = client.get("/")
    if page_html() is None:
        _assert_error(response, 404, "not_found")
    else:
        assert response.status_code == 200 and "<html" in response.text.lower()


def test_concurrent_requests_share_forward_passes(model, photos):
    from concurrent.futures import ThreadPoolExecutor

    predictor = Predictor(model, runtime=RT, faces="none")
    app = create_app(ServeSettings(batch_wait_ms=50, max_batch=64), predictor=predictor)
    names = ["a.png", "b.jpg", "c.webp"]
    with TestClient(app) as client:
        def one(i: int) -> list[dict]:
            name = names[i % 3]
            response = client.post("/v1/predict", files=_files(photos, [name]))
            assert response.status_code == 200
            return response.json()["rows"]

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(24)))
        batcher = app.state.service.batcher
    alone = {r["path"]: r for r in one_by_one(model, photos, names)}
    for i, rows in enumerate(answers):
        assert rows[0]["path"] == names[i % 3]
        assert rows[0]["probs"] == pytest.approx(alone[names[i % 3]]["probs"], abs=1e-6)
    assert batcher.images == 24 and batcher.batches < 24


def one_by_one(model: Path, photos: Path, names: list[str]) -> list[dict]:
    with _client(model) as client:
        return client.post("/v1/predict", files=_files(photos, names)).json()["rows"]


def test_settings_are_checked():
    from babyemo.errors import ConfigError

    with pytest.raises(ConfigError, match="max_files"):
        ServeSettings(max_files=0)
    with pytest.raises(ConfigError, match="token"):
        ServeSettings(token=" ")
