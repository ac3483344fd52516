"""The web console in a real browser (Debian's Chromium via Playwright) against a live deepscreen:
sign in, upload the face photo and a meme, watch the verdict arrive, and check that the evidence is
drawn where the API says — plus escaping, the CSP, keyboard use and a phone-sized screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, sync_playwright

from deepscreen.client import Client
from tests.clients.browser import chromium_args, require_chromium
from tests.clients.conftest import Live, astronaut_jpeg, meme_jpeg

pytestmark = pytest.mark.e2e
JS = Path(__file__).resolve().parents[2] / "web" / "static" / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=require_chromium(), headless=True, args=chromium_args())
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    # A refused credential is a 401 the page handles; any other failed load (a missing asset) is a problem.
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" and "status of 401" not in m.text
           else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    yield tab
    context.close()
    # A CSP violation, a script error or an alert() means the page broke its own rules.
    assert problems == [], problems


def sign_in(page: Page, live: Live, subject: str) -> str:
    api_key = live.api_key(subject)
    page.goto(f"{live.url}/")  # the root redirects to the console
    assert page.url == f"{live.url}/console/"
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#credential", api_key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#workspace:not([hidden])")
    page.wait_for_selector("#models input[name=models]")
    return api_key


def choose_models(page: Page, wanted: set[str]) -> None:
    for box in page.locator("#models input[name=models]").all():
        box.set_checked(box.get_attribute("value") in wanted)


def upload_and_wait(page: Page, name: str, data: bytes, mime: str = "image/jpeg", text: str = "") -> str:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
    if text:
        page.fill("#text", text)
    page.click("#submit")
    page.wait_for_selector("#job[data-status=succeeded], #job[data-status=failed]", timeout=240_000)
    assert page.get_attribute("#job", "data-status") == "succeeded", page.text_content("#verdict")
    job_id = page.get_attribute("#verdict", "data-job-id")
    assert job_id
    return job_id


def api_job(live: Live, api_key: str, job_id: str) -> dict[str, Any]:
    with Client(live.url, api_key=api_key) as client:
        return client.get_job(job_id).raw


def expected_rect(image: dict[str, float], media: dict[str, Any], x1: float, y1: float, x2: float,
                  y2: float) -> dict[str, float]:
    sx, sy = image["width"] / media["width"], image["height"] / media["height"]
    return {"x": image["x"] + x1 * sx, "y": image["y"] + y1 * sy, "width": (x2 - x1) * sx, "height": (y2 - y1) * sy}


def assert_close(actual: dict[str, float] | None, expected: dict[str, float], tolerance: float = 1.5) -> None:
    assert actual is not None
    for key in ("x", "y", "width", "height"):
        assert abs(actual[key] - expected[key]) <= tolerance, (key, actual, expected)


def test_face_photo_verdict_with_the_face_box_where_the_api_says(page: Page, live: Live, artifacts: Path) -> None:
    api_key = sign_in(page, live, "console-face")
    choose_models(page, {"deepfake"})
    job_id = upload_and_wait(page, "astronaut.jpg", astronaut_jpeg())
    assert page.evaluate("document.activeElement.id") == "job-title"  # focus follows the upload to its verdict

    job = api_job(live, api_key, job_id)
    faces = job["results"]["deepfake"]["evidence"]["faces"]
    assert len(faces) == 1
    drawn = page.locator("#overlay .box.face")
    assert drawn.count() == 1
    image = page.locator("#preview-image").bounding_box()
    assert image is not None and image["width"] > 100
    assert_close(drawn.first.bounding_box(), expected_rect(image, job["media"], *faces[0]["box"]))
    # The API's numbers, not the page's own: the per-face score and the label.
    assert f"{faces[0]['score']:.3f}" in drawn.first.text_content()
    card = page.locator("article.result[data-model=deepfake]")
    assert job["results"]["deepfake"]["label"] in card.locator(".headline").text_content()
    assert job["results"]["deepfake"]["model_version"] in card.locator("h3").text_content()
    # Shipped models carry no real-data validation: the card must say so where a moderator looks.
    warning = card.locator(".warning.validation")
    assert warning.is_visible() and "Not validated on real data" in warning.text_content()
    shot = artifacts / "console-face.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_meme_ocr_lines_and_branch_scores_are_drawn(page: Page, live: Live, artifacts: Path) -> None:
    api_key = sign_in(page, live, "console-meme")
    choose_models(page, {"meme"})
    job_id = upload_and_wait(page, "meme.jpg", meme_jpeg())

    meme = api_job(live, api_key, job_id)["results"]["meme"]
    lines = meme["evidence"]["ocr_lines"]
    assert lines and meme["evidence"]["text_source"] == "ocr"
    assert page.locator("#overlay .box.ocr").count() == len(lines)
    card = page.locator("article.result[data-model=meme]")
    assert card.locator("table.ocr-lines tbody tr").count() == len(lines)
    assert meme["evidence"]["text"] in card.locator("table.caption-table").text_content()
    for branch, scores in meme["evidence"]["branches"].items():
        for name, value in scores.items():
            if isinstance(value, float):
                assert f"{branch} · {name}" in card.text_content()
                assert f"{value:.3f}" in card.text_content()
    first = lines[0]["box"]
    image = page.locator("#preview-image").bounding_box()
    assert image is not None
    xs, ys = [p[0] for p in first], [p[1] for p in first]
    media = api_job(live, api_key, job_id)["media"]
    assert_close(page.locator("#overlay .box.ocr").first.bounding_box(),
                 expected_rect(image, media, min(xs), min(ys), max(xs), max(ys)))
    shot = artifacts / "console-meme.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")


def test_markup_in_a_file_name_and_in_text_is_shown_as_text(page: Page, live: Live) -> None:
    sign_in(page, live, "console-xss")
    choose_models(page, {"meme"})
    name = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>.png"
    text = "<script>window.__pwned = 3</script><b>bold?</b>"
    from tests.conftest import png_bytes

    upload_and_wait(page, name, png_bytes((96, 96)), mime="image/png", text=text)
    assert name in page.text_content("#file-name")
    assert name in page.text_content("#verdict")  # the job table's "file" row
    caption = page.locator("article.result[data-model=meme] table.caption-table").text_content()
    assert text in caption
    assert name in page.text_content("#job-list")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#verdict script, #verdict b, #verdict img[src=x], #job-list script").count() == 0


def test_keyboard_only_sign_in_and_phone_width(browser: Browser, live: Live, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    api_key = live.api_key("console-phone")
    page.goto(f"{live.url}/console/")
    page.wait_for_selector("body[data-ready=true]")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "credential"
    page.keyboard.type(api_key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#workspace:not([hidden])")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'file'")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "text"
    # Readable on a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shot = artifacts / "console-phone.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    context.close()


def test_recent_jobs_filter_by_status(page: Page, live: Live) -> None:
    api_key = sign_in(page, live, "console-history")
    with Client(live.url, api_key=api_key) as client:
        done = client.wait(client.submit_bytes(astronaut_jpeg()[:-200] + b"\xff\xd9", filename="cut.jpg"))
    page.select_option("#status-filter", "succeeded" if done.succeeded else "failed")
    page.wait_for_selector(f"#job-list button[data-job-id='{done.id}']")
    statuses = set(page.locator("#job-list button").evaluate_all("els => els.map(e => e.dataset.status)"))
    assert statuses == {done.status}
    other = "failed" if done.succeeded else "succeeded"
    with page.expect_response(lambda r: f"status={other}" in r.url):
        page.select_option("#status-filter", other)
    page.wait_for_function(f"() => !document.querySelector(\"#job-list button[data-job-id='{done.id}']\")")
    page.click("#filter-form button")  # the explicit button works too
    page.wait_for_timeout(300)
    assert page.locator(f"#job-list button[data-job-id='{done.id}']").count() == 0


def test_console_is_served_with_its_own_csp_and_no_inline_code(live: Live) -> None:
    from web.security import CONSOLE_CSP

    root = requests.get(f"{live.url}/", allow_redirects=False, timeout=10)
    assert root.status_code == 302 and root.headers["Location"].endswith("/console/")
    index = requests.get(f"{live.url}/console/", timeout=10)
    assert index.status_code == 200 and index.headers["Content-Security-Policy"] == CONSOLE_CSP
    assert "unsafe-inline" not in CONSOLE_CSP and "script-src 'self'" in CONSOLE_CSP
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(f"{live.url}/console/app.js", timeout=10).headers["Content-Type"].startswith(
        ("text/javascript", "application/javascript"))
    # The API keeps its own, stricter policy; the console's files cannot reach outside their folder.
    assert requests.get(f"{live.url}/health", timeout=10).headers["Content-Security-Policy"].startswith(
        "default-src 'none'")
    assert requests.get(f"{live.url}/console/../app.py", timeout=10).status_code == 404
    html = index.text
    assert "<script>" not in html and " style=" not in html and "<style" not in html
    for source in JS.glob("*.js"):
        code = source.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in code, (source.name, sink)


def test_sign_in_with_a_token_survives_a_reload_and_signing_out_forgets_it(page: Page, live: Live) -> None:
    page.goto(f"{live.url}/console/")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#credential", "ds_0000_not-a-real-key")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#signin-error:not(:empty)")
    assert "Could not sign in" in page.text_content("#signin-error")
    assert "API key" in page.text_content("#signin-error")  # the server's own words
    assert page.is_hidden("#workspace") and page.is_hidden("#sign-out")

    page.fill("#credential", live.token("console-token"))
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#workspace:not([hidden])")
    page.reload()  # sessionStorage: still signed in within this tab
    page.wait_for_selector("#workspace:not([hidden])")
    page.wait_for_selector("#models input[name=models]")
    page.click("#sign-out")
    assert page.is_visible("#signin") and page.evaluate("sessionStorage.length") == 0
