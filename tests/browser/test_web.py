"""The demo page in headless Chromium against a real server: what a person sees after uploading real photos.

Regenerate the README's screenshots with:  ATELIER_SCREENSHOTS=docs .venv/bin/python -m pytest tests/browser
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.browser.conftest import running_server

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
expect = playwright_api.expect
expect.set_options(timeout=15_000)  # generous for a loaded 2-core CI machine; a passing check returns at once

PHONE = {"width": 390, "height": 844}


def open_tab(page: Any, name: str) -> Any:
    page.get_by_role("tab", name=name).click()
    panel = page.locator(f"#panel-{name.lower()}")
    expect(panel).to_be_visible()
    return panel


def wait_done(panel: Any) -> None:
    """The request has finished: the spinner is gone (the page marks the results region busy while it runs)."""
    expect(panel.locator(".status.busy")).to_have_count(0, timeout=60_000)
    expect(panel.locator(".results[aria-busy=true]")).to_have_count(0)


def save_screenshot(page: Any, folder: Path | None, name: str) -> None:
    if folder is not None:
        page.evaluate("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
        page.screenshot(path=str(folder / f"screenshot-{name}.png"), full_page=True)


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


# ---------------------------------------------------------------------------------------------- the page itself


def test_page_loads_everything_from_atelier(page: Any, server_url: str) -> None:
    # The `page` fixture fails the test on any request outside the server and on any JavaScript error.
    expect(page).to_have_title("Atelier — style transfer, face detection and face verification")
    tabs = page.get_by_role("tab")
    expect(tabs).to_have_count(3)
    expect(page.get_by_role("tab", name="Stylize")).to_have_attribute("aria-selected", "true")
    for href in page.eval_on_selector_all("link[href], script[src]", "els => els.map(e => e.href || e.src)"):
        assert href.startswith(server_url), href


def test_keyboard_moves_between_tabs_with_visible_focus(page: Any) -> None:
    stylize = page.get_by_role("tab", name="Stylize")
    stylize.focus()
    page.keyboard.press("ArrowRight")
    detect = page.get_by_role("tab", name="Detect")
    expect(detect).to_be_focused()
    expect(detect).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-detect")).to_be_visible()
    expect(page.locator("#panel-stylize")).to_be_hidden()
    outline = detect.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline not in ("none", ""), "the focused tab has no visible focus outline"
    # Tab from the tab list goes into the panel: the photo picker, whose drop zone then shows the focus ring.
    page.keyboard.press("Tab")
    expect(page.locator("#detect-image")).to_be_focused()
    ring = page.locator("#detect-image + .drop-label").evaluate("el => getComputedStyle(el).outlineStyle")
    assert ring not in ("none", "")
    page.keyboard.press("End")  # only on tabs: focus is in the panel now, so nothing changes
    page.get_by_role("tab", name="Detect").focus()
    page.keyboard.press("End")
    expect(page.get_by_role("tab", name="Verify")).to_have_attribute("aria-selected", "true")
    assert page.evaluate("location.hash") == "#verify"


def test_phone_width_has_no_sideways_scrolling(browser: Any, server_url: str, photos: dict[str, Path]) -> None:
    context = browser.new_context(viewport=PHONE, base_url=server_url, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto("/")
        page.wait_for_selector("html[data-ready=true]")
        for name in ("Stylize", "Detect", "Verify"):
            page.get_by_role("tab", name=name).click()
            page.wait_for_timeout(100)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name}: the page is {overflow} px wider than a {PHONE['width']} px screen"
            submit = page.locator(f"#panel-{name.lower()} button[type=submit]")
            box = submit.bounding_box()
            assert box is not None and box["height"] >= 40  # a comfortable touch target
        # In one column the result lies below the form: the page brings it into view.
        page.get_by_role("tab", name="Detect").click()
        page.set_input_files("#detect-image", str(photos["astronaut"]))
        page.get_by_role("button", name="Detect faces").click()
        expect(page.locator("#detect-overlay rect.face-box")).to_have_count(1)
        expect(page.locator("#detect-summary")).to_be_in_viewport()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"with a result, the page is {overflow} px wider than the screen"
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------- Detect


def test_detect_draws_boxes_and_landmarks(page: Any, photos: dict[str, Path], screenshot_dir: Path | None) -> None:
    panel = open_tab(page, "Detect")
    page.set_input_files("#detect-image", str(photos["obama.jpg"]))
    expect(panel.locator(".drop-name")).to_contain_text("obama.jpg")
    # Record whether the spinner showed while the request ran.
    panel.locator(".status").evaluate("""el => { window.sawSpinner = false; new MutationObserver(() => {
        if (el.classList.contains('busy') && getComputedStyle(el, '::before').animationName === 'spin')
            window.sawSpinner = true; }).observe(el, {attributes: true}); }""")
    page.get_by_role("button", name="Detect faces").click()
    wait_done(panel)
    assert page.evaluate("window.sawSpinner"), "no spinner while the request ran"
    # shared/WEIGHTS.md: at the default thresholds MTCNN finds Obama's face (p = 0.9997) and one false positive
    # (p = 0.815).
    expect(panel.locator("#detect-overlay rect.face-box")).to_have_count(2)
    expect(panel.locator("#detect-overlay circle.landmark")).to_have_count(10)
    expect(panel.locator("#detect-summary")).to_have_text(f"2 faces found in this {image_size(photos['obama.jpg'])[0]}"
                                                          f" × {image_size(photos['obama.jpg'])[1]} photo.")
    items = panel.locator("#detect-faces li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("score 0.99")
    expect(items.nth(1)).to_contain_text("score 0.8")
    # The overlay lies over the displayed photo, in the image's pixel coordinates.
    photo_box = panel.locator("#detect-photo").bounding_box()
    overlay_box = panel.locator("#detect-overlay").bounding_box()
    assert photo_box and overlay_box
    assert all(abs(photo_box[k] - overlay_box[k]) < 1.5 for k in ("x", "y", "width", "height"))
    expect(panel.locator("#detect-curl")).to_contain_text("thresholds=0.6,0.7,0.7", use_inner_text=False)

    # A stricter last stage drops the false positive.
    panel.get_by_label("O-Net").fill("0.9")
    page.get_by_role("button", name="Detect faces").click()
    wait_done(panel)
    expect(panel.locator("#detect-overlay rect.face-box")).to_have_count(1)
    expect(panel.locator("#detect-summary")).to_contain_text("1 face found")
    expect(panel.locator(".status")).to_have_text("Done: 1 face.")
    save_screenshot(page, screenshot_dir, "detect")

    page.set_input_files("#detect-image", str(photos["coffee"]))
    page.get_by_role("button", name="Detect faces").click()
    wait_done(panel)
    expect(panel.locator("#detect-overlay rect.face-box")).to_have_count(0)
    expect(panel.locator("#detect-summary")).to_contain_text("No face found")


def test_detect_explains_a_file_that_is_not_an_image(page: Any, photos: dict[str, Path]) -> None:
    panel = open_tab(page, "Detect")
    page.get_by_role("button", name="Detect faces").click()
    alert = panel.get_by_role("alert")
    expect(alert).to_contain_text("Choose a photo first.")

    page.set_input_files("#detect-image", str(photos["not-an-image"]))
    expect(panel.locator(".drop-name")).to_contain_text("no preview")
    page.get_by_role("button", name="Detect faces").click()
    wait_done(panel)
    expect(alert).to_be_visible()
    expect(alert.locator(".error-title")).to_have_text("That file is not an image Atelier can read.")
    expect(alert).to_contain_text("Choose a photo saved as JPEG, PNG")
    expect(alert.locator(".error-detail")).to_contain_text("HTTP 422 INVALID_IMAGE")
    expect(alert.locator(".error-request-id")).to_contain_text(re.compile(r"Request ID .*: [0-9a-f]{32}$"))
    expect(panel.locator("#detect-result")).to_be_hidden()

    # A value the API refuses: its message is shown with the plain-words explanation.
    page.set_input_files("#detect-image", str(photos["astronaut"]))
    panel.get_by_label("Min. face (px)").fill("5")
    page.get_by_role("button", name="Detect faces").click()
    wait_done(panel)
    expect(alert.locator(".error-title")).to_have_text("One of the settings is not accepted.")
    expect(alert.locator(".error-detail")).to_contain_text("min_face_size")
    panel.get_by_role("button", name="Reset to the defaults").click()
    page.get_by_role("button", name="Detect faces").click()
    wait_done(panel)
    expect(alert).to_be_hidden()
    expect(panel.locator("#detect-overlay rect.face-box")).to_have_count(1)


# ---------------------------------------------------------------------------------------------- Stylize


def test_stylize_gallery_and_result(page: Any, photos: dict[str, Path], server_url: str,
                                    screenshot_dir: Path | None, tmp_path: Path) -> None:
    with urllib.request.urlopen(f"{server_url}/v1/styles") as response:  # noqa: S310 - loopback
        styles = json.load(response)["styles"]
    panel = open_tab(page, "Stylize")
    cards = panel.locator(".style-card")
    expect(cards).to_have_count(len(styles))
    for kind in {s["kind"] for s in styles}:
        expect(panel.locator(f".style-card[data-kind='{kind}']")).to_have_count(
            sum(1 for s in styles if s["kind"] == kind))
    # Every preview the API lists is shown (loaded, not broken).
    with_preview = [s for s in styles if s["preview_url"]]
    thumbs = panel.locator(".style-card img.style-thumb")
    expect(thumbs).to_have_count(len(with_preview))
    panel.locator("#style-gallery").evaluate("el => el.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.querySelectorAll('#style-gallery img')].every(i => i.complete)")
    broken = page.eval_on_selector_all("#style-gallery img", "els => els.filter(i => !i.naturalWidth).length")
    assert broken == 0

    network = next(s for s in styles if s["kind"] != "arbitrary")
    page.set_input_files("#stylize-image", str(photos["chelsea"]))
    panel.locator(f".style-card[data-style-id='{network['id']}']").click()
    expect(panel.locator("#style-image-box")).to_be_hidden()
    panel.get_by_label("Strength").fill("0.8")
    expect(panel.locator("#stylize-strength-out")).to_have_text("80%")
    page.get_by_role("button", name="Stylize").click()
    wait_done(panel)
    expect(panel.get_by_role("alert")).to_be_hidden()
    width, height = image_size(photos["chelsea"])
    output = panel.locator("#stylize-output")
    assert output.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [width, height]
    original = panel.locator("#stylize-original")
    assert original.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [width, height]
    expect(panel.locator("#stylize-meta")).to_contain_text(f"{width} × {height} px")
    # The download is the stylised image itself, at the photo's size.
    with page.expect_download() as download_info:
        panel.get_by_role("link", name="Download").click()
    download = download_info.value
    assert download.suggested_filename == f"chelsea-{network['id']}.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert image_size(saved) == (width, height)
    # The stylised picture differs from the original (the server did paint it).
    differs = page.evaluate("""() => {
        const size = (img) => { const c = document.createElement('canvas'); c.width = img.naturalWidth;
            c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            return g.getImageData(0, 0, c.width, c.height).data; };
        const a = size(document.querySelector('#stylize-output'));
        const b = size(document.querySelector('#stylize-original'));
        let total = 0; for (let i = 0; i < a.length; i += 4) total += Math.abs(a[i] - b[i]);
        return total / (a.length / 4); }""")
    assert differs > 5, f"mean red difference {differs} between the result and the original"
    # The before/after slider moves the divide, by keyboard too.
    slider = panel.get_by_label("Before and after", exact=False)
    slider.focus()
    page.keyboard.press("End")
    assert panel.locator("#stylize-compare").evaluate("el => el.style.getPropertyValue('--pos')") == "100%"
    page.keyboard.press("Home")
    assert panel.locator("#stylize-compare").evaluate("el => el.style.getPropertyValue('--pos')") == "0%"
    slider.fill("50")
    # Side by side shows both pictures whole, next to each other.
    panel.get_by_role("button", name="Side by side").click()
    before, after = panel.locator("#stylize-original").bounding_box(), output.bounding_box()
    assert before and after and before["x"] + before["width"] <= after["x"] and abs(before["y"] - after["y"]) < 1
    assert abs(before["width"] - after["width"]) < 1
    panel.get_by_role("button", name="Side by side").click()
    save_screenshot(page, screenshot_dir, "stylize")


def test_stylize_any_style_takes_a_second_image(page: Any, photos: dict[str, Path]) -> None:
    panel = open_tab(page, "Stylize")
    any_style = panel.locator(".style-card[data-kind='arbitrary']")
    if any_style.count() == 0:
        pytest.skip("this deployment lists no arbitrary-style entry")
    page.set_input_files("#stylize-image", str(photos["astronaut"]))
    any_style.click()
    expect(panel.locator("#style-image-box")).to_be_visible()
    page.get_by_role("button", name="Stylize").click()
    expect(panel.get_by_role("alert")).to_contain_text("Choose a style image first.")
    # The server does not say which upload it could not read; the page names the one it could not preview either.
    page.set_input_files("#stylize-style-image", str(photos["not-an-image"]))
    page.get_by_role("button", name="Stylize").click()
    wait_done(panel)
    expect(panel.get_by_role("alert").locator(".error-title")).to_have_text(
        "The style image is not an image Atelier can read.")
    page.set_input_files("#stylize-style-image", str(photos["coffee"]))
    panel.get_by_label("Preserve colours").check()
    panel.get_by_label("File format").select_option("jpeg")
    page.get_by_role("button", name="Stylize").click()
    wait_done(panel)
    expect(panel.get_by_role("alert")).to_be_hidden()
    width, height = image_size(photos["astronaut"])
    assert panel.locator("#stylize-output").evaluate("i => [i.naturalWidth, i.naturalHeight]") == [width, height]
    expect(panel.get_by_role("link", name="Download")).to_have_attribute("download", "astronaut-any-style.jpg")
    expect(panel.locator("#stylize-curl")).to_contain_text("style_image=@coffee.png", use_inner_text=False)


# ---------------------------------------------------------------------------------------------- Verify


def test_verify_says_same_person_or_not(page: Any, photos: dict[str, Path],
                                        screenshot_dir: Path | None) -> None:
    panel = open_tab(page, "Verify")
    page.set_input_files("#verify-image-a", str(photos["obama.jpg"]))
    page.set_input_files("#verify-image-b", str(photos["biden.jpg"]))
    page.get_by_role("button", name="Compare faces").click()
    wait_done(panel)
    expect(panel.locator("#verify-decision")).to_have_text("Different people")
    expect(panel.locator("#verify-explanation")).to_contain_text("below the threshold")

    page.set_input_files("#verify-image-b", str(photos["obama2.jpg"]))
    page.get_by_role("button", name="Compare faces").click()
    wait_done(panel)
    expect(panel.get_by_role("alert")).to_be_hidden()
    expect(panel.locator("#verify-decision")).to_have_text("Same person")
    expect(panel.locator("#verify-explanation")).to_contain_text("at or above the threshold")
    # One highlighted face per photo, inside the photo.
    for side in ("a", "b"):
        boxes = panel.locator(f"#verify-overlay-{side} rect.face-box")
        expect(boxes).to_have_count(1)
        expect(panel.locator(f"#verify-overlay-{side} circle.landmark")).to_have_count(5)
        width, height = panel.locator(f"#verify-photo-{side}").evaluate("i => [i.naturalWidth, i.naturalHeight]")
        x, y, w, h = (float(boxes.get_attribute(a) or "nan") for a in ("x", "y", "width", "height"))
        assert x >= 0 and y >= 0 and x + w <= width + 1 and y + h <= height + 1
    gauge = panel.locator("#verify-gauge").get_attribute("aria-label") or ""
    assert gauge.startswith("Similarity 0.9"), gauge
    save_screenshot(page, screenshot_dir, "verify")


def test_verify_names_the_photo_without_a_face(page: Any, photos: dict[str, Path]) -> None:
    panel = open_tab(page, "Verify")
    page.set_input_files("#verify-image-a", str(photos["coffee"]))
    page.set_input_files("#verify-image-b", str(photos["obama.jpg"]))
    page.get_by_role("button", name="Compare faces").click()
    wait_done(panel)
    alert = panel.get_by_role("alert")
    expect(alert.locator(".error-title")).to_have_text("No face was found in the first photo.")
    expect(alert).to_contain_text("Use a photo where a face is clearly visible")


# ---------------------------------------------------------------------------------------------- API keys


def test_api_key_entered_on_the_page(browser: Any, photos: dict[str, Path], tmp_path: Path) -> None:
    if os.environ.get("ATELIER_TEST_SERVER"):
        pytest.skip("starts its own server with API keys")
    key = "page-test-key-1234"
    with running_server(tmp_path, api_keys=key) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
        try:
            page = context.new_page()
            page.goto("/#detect")
            page.wait_for_selector("html[data-ready=true]")
            panel = page.locator("#panel-detect")
            page.set_input_files("#detect-image", str(photos["astronaut"]))
            page.get_by_role("button", name="Detect faces").click()
            wait_done(panel)
            alert = panel.get_by_role("alert")
            expect(alert.locator(".error-title")).to_have_text("This server needs an API key.")
            expect(alert.locator(".error-detail")).to_contain_text("HTTP 401 UNAUTHORIZED")

            page.get_by_text("API key", exact=True).click()
            page.get_by_label("Key sent as", exact=False).fill(key)
            page.keyboard.press("Enter")
            page.get_by_role("button", name="Detect faces").click()
            wait_done(panel)
            expect(alert).to_be_hidden()
            expect(panel.locator("#detect-overlay rect.face-box")).to_have_count(1)
            # The shown command refers to the key by a variable; the key itself never appears on the page.
            expect(panel.locator("#detect-curl")).to_contain_text('-H "X-API-Key: $ATELIER_API_KEY"',
                                                                  use_inner_text=False)
            assert key not in page.locator("main").inner_text()
        finally:
            context.close()
