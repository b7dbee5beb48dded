"""``babyemo serve`` over a real uvicorn on 127.0.0.1 (50 concurrent requests), on real
baby photos with the packaged model, and its CLI (host/token checks, help)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageOps

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from typer.testing import CliRunner  # noqa: E402

from babyemo.cli import app as cli_app  # noqa: E402
from babyemo.serve import ServeSettings, create_app  # noqa: E402
from babyemo.serve.server import running  # noqa: E402
from tests.conftest import make_checkpoint, make_image, run_cli_in_subprocess  # noqa: E402
from tests.serve.test_api import RT  # noqa: E402

runner = CliRunner()


def test_fifty_concurrent_requests_on_a_real_server(tiny_arch, tmp_path):
    model = make_checkpoint(tmp_path / "model.pt", tiny_arch)
    photos = tmp_path / "photos"
    names = [f"p{i:02d}.png" for i in range(10)]
    for i, name in enumerate(names):
        make_image(photos / name, color=(25 * i, 200 - 15 * i, 90), size=(32 + i, 32))
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    names.append("broken.png")
    app = create_app(ServeSettings(checkpoint=str(model), runtime=RT, faces="none"))
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/v1/health").json() == {"status": "ok", "model": "model"}

        def one(i: int) -> tuple[int, list[dict]]:
            name = names[i % len(names)]
            r = client.post("/v1/predict", files=[("files", (name, (photos / name).read_bytes()))])
            assert r.status_code == 200, r.text
            return i, r.json()["rows"]

        with ThreadPoolExecutor(50) as pool:
            answers = dict(pool.map(one, range(50)))
        batcher = app.state.service.batcher
        assert batcher.batches < batcher.images  # requests shared forward passes
    assert sorted(answers) == list(range(50))  # all answered, none lost
    expected = {r["path"]: r for r in _cli_json_for(photos, model, names)}
    for i, rows in answers.items():
        (row,) = rows
        want = expected[names[i % len(names)]]
        assert row["path"] == want["path"] and row["label"] == want["label"]
        assert row["error"] == want["error"]
        assert row["probs"] == pytest.approx(want["probs"], abs=1e-6)


def _cli_json_for(photos: Path, model: Path, names: list[str]) -> list[dict]:
    out = photos.parent / "cli.json"
    result = runner.invoke(cli_app, ["-q", "predict", *(str(photos / n) for n in names),
                                     "--checkpoint", str(model), "--faces", "none",
                                     "--precision", "fp32", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    for row in rows:
        row["path"] = Path(row["path"]).name
    return rows


@pytest.mark.realdata
def test_real_baby_photos_equal_babyemo_predict(baby_photos_dir, shared_data, tmp_path,
                                                monkeypatch):
    pytest.importorskip("cv2")
    monkeypatch.setenv("BABYEMO_MODELS", str(shared_data.parent / "models"))
    photos = sorted(p for p in baby_photos_dir.iterdir() if p.suffix == ".jpg")[:3]
    app = create_app(ServeSettings(runtime=RT))
    with running(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        r = client.post("/v1/predict", files=[("files", (p.name, p.read_bytes()))
                                              for p in photos])
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    out = tmp_path / "cli.json"
    result = runner.invoke(cli_app, ["-q", "predict", *map(str, photos), "--precision", "fp32",
                                     "--readers", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    want = json.loads(out.read_text())
    assert len(rows) == len(want) >= 3
    for got, exp in zip(rows, want, strict=True):
        size = got.pop("image_size")
        assert got["path"] == Path(exp["path"]).name
        assert {k: v for k, v in got.items() if k not in ("path", "probs", "confidence",
                                                          "box", "det_score")} \
            == {k: v for k, v in exp.items() if k not in ("path", "probs", "confidence",
                                                          "box", "det_score")}
        assert got["probs"] == pytest.approx(exp["probs"], abs=1e-5)
        assert got["box"] == pytest.approx(exp["box"], abs=1e-3)
        with Image.open(baby_photos_dir / got["path"]) as img:
            assert size == list(ImageOps.exif_transpose(img).size)
        x, y, w, h = got["box"]  # a detected face may reach past the border, as in the CLI
        assert x < size[0] and y < size[1] and x + w > 0 and y + h > 0


def test_cli_refuses_a_public_host_without_token():
    result = runner.invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "needs --token" in result.stderr


def test_cli_help_imports_neither_torch_nor_fastapi():
    proc = run_cli_in_subprocess(["serve", "--help"],
                                 heavy=("torch", "fastapi", "uvicorn", "starlette"))
    assert "--token" in proc.stdout and "--host" in proc.stdout


def test_cli_without_the_serve_extra_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else real(name, *a))
    result = runner.invoke(cli_app, ["serve"])
    assert result.exit_code == 1
    assert "pip install 'babyemo[serve]'" in result.stderr


def test_cli_serves_and_prints_its_url(tiny_arch, tmp_path):
    import os
    import subprocess
    import sys

    from babyemo.serve.server import free_port

    model = make_checkpoint(tmp_path / "model.pt", tiny_arch)
    port = free_port()
    code = ("import sys; from tests.conftest import _register_tiny_arch; _register_tiny_arch(); "
            "from babyemo.cli import app; app(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--checkpoint", str(model),
                             "--port", str(port), "--faces", "none", "--token", "tok"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line and "model model" in line
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(100):  # the URL is printed just before uvicorn binds
                try:
                    r = client.get("/v1/health", headers={"Authorization": "Bearer tok"})
                    break
                except httpx.ConnectError:
                    import time

                    time.sleep(0.05)
            assert r.json() == {"status": "ok", "model": "model"}
            assert client.get("/v1/health").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_public_host_needs_a_token_and_warns():
    from babyemo.cli.serve import check_host
    from babyemo.errors import ConfigError

    assert check_host("127.0.0.1", None) is False and check_host("::1", None) is False
    assert check_host("0.0.0.0", "t") is True
    with pytest.raises(ConfigError, match="needs --token"):
        check_host("192.168.1.5", None)
