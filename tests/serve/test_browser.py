"""The page of ``babyemo serve`` in a real browser: headless Chromium (Debian's ``chromium``
and ``chromium-driver`` packages) driven by Selenium, against a real ``babyemo serve``
subprocess with the packaged model and YuNet.

Skipped when Chromium, chromedriver, Selenium or the ``serve`` extra is missing; with
``BABYEMO_REQUIRE_REAL_DATA=1`` (set by ``.ci/run``) a missing piece is a failure instead,
as for the real data (``tests/conftest.py``).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

TOKEN = "browser-test-token"


def _need(ok: object, what: str) -> None:
    """Skip (or fail under ``BABYEMO_REQUIRE_REAL_DATA=1``) unless ``ok``."""
    if ok:
        return
    if os.environ.get("BABYEMO_REQUIRE_REAL_DATA") == "1":
        pytest.fail(f"browser test required but {what}")
    pytest.skip(what)


def _browser_tools() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    _need(chromium, "no chromium (apt-get install chromium chromium-driver)")
    _need(driver, "no chromedriver (apt-get install chromium-driver)")
    _need(importlib.util.find_spec("selenium"), "selenium is not installed (pip install selenium)")
    _need(importlib.util.find_spec("fastapi") and importlib.util.find_spec("uvicorn"),
          "the serve extra is not installed (pip install 'babyemo[serve]')")
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"babyemo serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            req = urllib.request.Request(url + "/v1/health",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if json.load(resp)["status"] == "ok":
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"babyemo serve did not answer {url}/v1/health in {timeout:.0f} s")


def make_driver(chromium: str, chromedriver: str, download_dir: Path):
    """Headless Chromium from the given binaries (Selenium Manager downloads nothing:
    the driver path is given), downloads going to ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {
        "download.default_directory": str(download_dir),
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    driver.execute_cdp_cmd("Page.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def upload_and_download(driver, url: str, photos: list[Path], download_dir: Path,
                        screenshot: Path) -> tuple[list, str]:
    """Open the page, upload ``photos``, wait for one card per photo, save a screenshot,
    click Download CSV. Returns the cards (WebElements) and the CSV's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("model "))
    driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in photos))
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("Done"))
    cards = driver.find_elements(By.CSS_SELECTOR, "#cards .card")
    driver.save_screenshot(str(screenshot))
    driver.find_element(By.ID, "download").click()
    target = download_dir / "predictions.csv"
    WebDriverWait(driver, 30).until(lambda d: target.exists() and target.stat().st_size > 0)
    return cards, target.read_bytes().decode("utf-8")


@pytest.fixture()
def serve_url(baby_photos_dir, tmp_path, monkeypatch):
    """A real ``babyemo serve`` (packaged model, YuNet from ../shared/models) on a free
    port, with a token; yields its URL."""
    from tests.conftest import SHARED_MODELS

    _browser_tools()
    _need(any(SHARED_MODELS.glob("face_detection_yunet*.onnx")),
          f"no YuNet model file in {SHARED_MODELS}")
    port = _free_port()
    env = {**os.environ, "BABYEMO_MODELS": str(SHARED_MODELS)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "babyemo", "serve", "--model", "babyemo-infant",
         "--port", str(port), "--token", TOKEN],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_page_uploads_three_real_photos_and_downloads_the_cli_csv(serve_url, baby_photos_dir,
                                                                  tmp_path, monkeypatch):
    """Three real photos with a face: three cards with face boxes, labels and bars; the
    downloaded CSV equals ``babyemo predict --csv`` on the same files; a screenshot."""
    chromium, chromedriver = _browser_tools()
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download anything
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.conftest import SHARED_MODELS

    photos = sorted(p for p in baby_photos_dir.glob("*.jpg") if p.name[0].isdigit())[:3]
    assert len(photos) == 3
    # The CLI on the same files, named as the page uploads them (the bare file name).
    named = tmp_path / "named"
    named.mkdir()
    for p in photos:
        (named / p.name).symlink_to(p)
    cli = subprocess.Popen(  # runs while the browser works
        [sys.executable, "-m", "babyemo", "predict", *(p.name for p in photos),
         "--model", "babyemo-infant", "--csv", str(tmp_path / "cli.csv")],
        cwd=named, env={**os.environ, "BABYEMO_MODELS": str(SHARED_MODELS)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    screenshot = tmp_path / "serve-page.png"
    driver = make_driver(chromium, chromedriver, downloads)
    try:
        cards, page_csv = upload_and_download(driver, f"{serve_url}/#token={TOKEN}", photos,
                                              downloads, screenshot)
        assert len(cards) == 3
        for card, photo in zip(cards, photos, strict=True):
            assert card.find_element(By.CSS_SELECTOR, ".name").text == photo.name
            img = card.find_element(By.TAG_NAME, "img")
            assert img.get_attribute("src").startswith("blob:")  # shown from the local file
            assert driver.execute_script("return arguments[0].naturalWidth", img) > 0
            assert img.get_attribute("alt").startswith(photo.name)
            boxes = card.find_elements(By.CSS_SELECTOR, ".box:not(.whole)")
            assert boxes and all(b.size["width"] > 5 and b.size["height"] > 5 for b in boxes)
            assert len(card.find_elements(By.CSS_SELECTOR, ".bars dd")) == 3 * len(boxes)
        # The token came from the URL fragment and left the address bar.
        assert "token" not in driver.current_url
        assert driver.execute_script("return localStorage.length") == 0
        # Filtering by label hides the other cards.
        labels = [r["label"] for r in csv.DictReader(io.StringIO(page_csv))]
        Select(driver.find_element(By.ID, "filter-label")).select_by_value(labels[0])
        visible = [c for c in cards if c.is_displayed()]
        assert len(visible) == sum(1 for x in labels if x == labels[0])
        Select(driver.find_element(By.ID, "filter-label")).select_by_value("")
        # The low-confidence slider shows the photos below it.
        driver.execute_script("const r = document.getElementById('filter-conf'); r.value = 0.6;"
                              " r.dispatchEvent(new Event('input'))")
        below = [float(r["confidence"]) < 0.6 for r in csv.DictReader(io.StringIO(page_csv))]
        assert [c.is_displayed() for c in cards] == below
        # The page's number format is Python's (round half to even on the exact binary
        # value), also for ties such as 145.25 -> 145.2, on many values.
        rng = random.Random(0)
        values = [145.25, 145.75, 0.125, 2.675, 0.00005, -0.0, 0.0, 1.0, 639.95]
        values += [rng.random() for _ in range(2000)]
        values += [rng.randint(0, 2**20) / 2**14 for _ in range(2000)]
        got = driver.execute_script("return arguments[0].map(v => [fixed(v, 1), fixed(v, 4)])",
                                    values)
        assert got == [[f"{v:.1f}", f"{v:.4f}"] for v in values]
    finally:
        driver.quit()
        _, cli_err = cli.communicate(timeout=300)

    assert cli.returncode == 0, cli_err
    cli_text = (tmp_path / "cli.csv").read_bytes().decode("utf-8")
    assert page_csv == cli_text  # same columns, rows, number formats and line ends
    rows = list(csv.DictReader(io.StringIO(page_csv)))
    assert [r["path"] for r in rows] == [p.name for p in photos]
    assert all(r["face"] == "detected" and r["box_w"] for r in rows)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("BABYEMO_SCREENSHOT_DIR"):
        out = Path(os.environ["BABYEMO_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, out / screenshot.name)
