"""The web page in a real browser: Debian's headless chromium, driven by Selenium.

It opens the page of the session's server, uploads a generated photo through the file
picker, reads the predicted class off the page, opens the report view and saves a
screenshot (to $IMGCLF_SERVE_SCREENSHOT as well when set). `.ci/run` installs chromium
and chromium-driver when they are missing, so CI runs this test.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Debian's names first (.ci/run installs those); other distributions' as a fallback.
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                 "google-chrome"))), "/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,900")

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver; .ci/run installs them)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_page_classifies_an_uploaded_photo_and_shows_the_report(
        server: Any, browser: Any, photo: Callable[..., bytes], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    upload = tmp_path / "my_green_photo.jpg"
    upload.write_bytes(photo("green", 7, "JPEG", size=200))
    browser.get(server.url)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert "blue, green, red" in browser.find_element(By.ID, "model-info").text

    browser.find_element(By.ID, "file-input").send_keys(str(upload))
    card = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, '.card[data-file="my_green_photo.jpg"] .predicted')))
    assert card.text == "green"
    bars = browser.find_elements(By.CSS_SELECTOR, ".card .bar")
    assert bars[0].get_attribute("data-class") == "green"
    assert len(bars) == 3
    assert "1 of 1 classified" in browser.find_element(By.ID, "status").text
    shot = tmp_path / "serve.png"
    browser.save_screenshot(str(shot))

    browser.find_element(By.ID, "tab-report").click()
    table = wait.until(ec.presence_of_element_located((By.ID, "metrics-table")))
    assert "0.9333" in table.text and "Expected calibration error" in table.text
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#report-pictures figure img"))
    captions = [f.text for f in browser.find_elements(By.TAG_NAME, "figcaption")]
    assert captions == ["Confusion matrix"]
    missing = browser.find_element(By.ID, "report-missing").text
    assert "calibration.png is missing" in missing and "misclassified.png" in missing
    browser.save_screenshot(str(tmp_path / "serve-report.png"))

    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 5000
    if os.environ.get("IMGCLF_SERVE_SCREENSHOT"):
        for name in ("serve.png", "serve-report.png"):
            dest = Path(os.environ["IMGCLF_SERVE_SCREENSHOT"]).with_name(name)
            shutil.copyfile(tmp_path / name, dest)


def test_page_shows_an_unknown_photo_as_none_of_the_classes(
        server: Any, browser: Any, photo: Callable[..., bytes], tmp_path: Path,
        serve_helpers: Any, tiny_model: Path, report_dir: Path) -> None:
    """A text rendering beside a green photo, on a server whose threshold lies between
    their scores: the one above it is flagged unknown, and its card says "none of: ..."
    with no answer bar; the other keeps its bars. (The session's tiny model is a poor
    detector, surer of some text than of its own colours, so the test takes the threshold
    between the two; the ood stage measures the detector, docs/ood.md.)"""
    import httpx
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from imgclf.models.ood import generated_images

    text = tmp_path / "a_page_of_text.png"
    Image.fromarray(generated_images(200, 1, seed=3)["text"][0]).save(text)
    known = tmp_path / "green.jpg"
    known.write_bytes(photo("green", 3, "JPEG", size=200))
    answers = {Path(a["path"]).name: a for a in httpx.post(
        server.url + "predict", timeout=60, files=[
            ("files", (f.name, f.read_bytes(), "image/png")) for f in (text, known)]).json()}
    unknown, other = sorted(answers, key=lambda n: -answers[n]["ood_score"])
    assert answers[unknown]["ood_score"] > answers[other]["ood_score"], answers
    middle = (answers[unknown]["ood_score"] + answers[other]["ood_score"]) / 2
    own = serve_helpers.start_server(tiny_model, report_dir, "--unknown-threshold",
                                     str(middle), env={"IMGCLF_SERVE_TOKEN": ""})
    try:
        assert httpx.get(own.url + "info", timeout=60).json()["unknown_threshold"] == middle
        wait = WebDriverWait(browser, 60)
        browser.get(own.url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        browser.find_element(By.ID, "file-input").send_keys(f"{text}\n{known}")
        card = wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, f'.card.unknown[data-file="{unknown}"]')))
        assert card.find_element(By.CSS_SELECTOR, ".predicted").text == (
            "none of: blue, green, red")
        assert "closest: " + answers[unknown]["predicted"] in card.text
        assert not card.find_elements(By.CSS_SELECTOR, ".bar.top")  # no answer bar
        kept = browser.find_element(By.CSS_SELECTOR, f'.card[data-file="{other}"]')
        assert "unknown" not in kept.get_attribute("class")
        assert kept.find_element(By.CSS_SELECTOR, ".bar.top").get_attribute(
            "data-class") == answers[other]["predicted"]
        browser.save_screenshot(str(tmp_path / "serve-unknown.png"))
    finally:
        serve_helpers.stop_server(own)


def test_page_toggle_shows_the_heatmap_overlay(server: Any, browser: Any,
                                               photo: Callable[..., bytes],
                                               tmp_path: Path) -> None:
    """Off by default: the card shows the photo; on: the photo beside its heatmap
    (POST /explain), also for a photo classified while it was off."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    upload = tmp_path / "why_blue.png"
    grey = Image.new("RGB", (120, 120), (150, 150, 150))  # a blue corner on grey
    grey.paste(Image.open(io.BytesIO(photo("blue", 5, "PNG", size=50))), (70, 0))
    grey.save(upload)
    browser.get(server.url)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    toggle = browser.find_element(By.ID, "explain")
    assert not toggle.is_selected()
    browser.find_element(By.ID, "file-input").send_keys(str(upload))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '.card[data-file="why_blue.png"] '
                                                          '.predicted'))
    assert not browser.find_elements(By.CSS_SELECTOR, ".card .overlay")  # none unasked
    toggle.click()
    overlay = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".card img.overlay"))
    wait.until(lambda d: d.execute_script("return arguments[0].complete && "
                                          "arguments[0].naturalWidth", overlay))
    assert overlay.is_displayed() and overlay.get_attribute("alt").startswith("heatmap of ")
    photo_img = browser.find_element(By.CSS_SELECTOR, ".card img:not(.overlay)")
    assert not photo_img.is_displayed()
    shot = tmp_path / "serve-explain.png"
    browser.save_screenshot(str(shot))
    toggle.click()
    assert photo_img.is_displayed() and not overlay.is_displayed()
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("IMGCLF_SERVE_SCREENSHOT"):
        shutil.copyfile(shot, Path(os.environ["IMGCLF_SERVE_SCREENSHOT"]).with_name(shot.name))
