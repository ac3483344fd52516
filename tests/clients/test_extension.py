"""The reference extension loaded unpacked into Debian's Chromium (headless=new) against a live
deepscreen: set the server and key on its options page, open a local page with an image, run the
"Check with deepscreen" handler in its service worker (a context menu cannot be clicked headless),
and read the verdict from the badge and the popup. A second check of the same image is answered by
/v1/lookup without an upload."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Worker, sync_playwright

from tests.clients.browser import chromium_args, require_chromium
from tests.clients.conftest import Live, astronaut_jpeg
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
EXTENSION = Path(__file__).resolve().parents[2] / "extension"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[str]:
    """A local web page showing the face photo, served over loopback like any site."""
    (tmp_path / "astronaut.jpg").write_bytes(astronaut_jpeg(quality=87))  # bytes no other test uploads
    (tmp_path / "index.html").write_text('<!doctype html><title>a page</title>'
                                         '<img id="pic" src="astronaut.jpg" alt="">')
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=require_chromium(), headless=False,
            args=[*chromium_args(), "--headless=new", f"--disable-extensions-except={EXTENSION}",
                  f"--load-extension={EXTENSION}"],
        )
        yield context
        context.close()


MENU_EXISTS = """async () => {
  for (let i = 0; i < 100; i++) {
    try {
      await chrome.contextMenus.update('deepscreen-check', {title: 'Check with deepscreen'});
      return true;
    } catch (e) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return false;
}"""


def service_worker(context: BrowserContext) -> Worker:
    workers = [w for w in context.service_workers if w.url.startswith("chrome-extension://")]
    return workers[0] if workers else context.wait_for_event("serviceworker", timeout=30_000)


def test_check_an_image_from_a_page(browser: BrowserContext, site: str, live: Live, artifacts: Path) -> None:
    worker = service_worker(browser)
    extension_id = worker.url.split("/")[2]
    # The context-menu entry exists (update() rejects an unknown id). onInstalled creates it, and the
    # worker can answer before that listener has run, so ask until it is there or 10 s have passed.
    assert worker.evaluate(MENU_EXISTS), "the 'Check with deepscreen' menu entry was never created"

    options = browser.new_page()
    options.goto(f"chrome-extension://{extension_id}/options.html")
    options.fill("#server", live.url)
    options.fill("#api-key", live.api_key("extension-user"))
    options.fill("#models", "deepfake")
    options.click("button[type=submit]")
    options.wait_for_selector("#status.ok")
    assert "submit read" in options.text_content("#status")

    page = browser.new_page()
    page.goto(f"{site}/index.html")
    image_url = page.evaluate("document.getElementById('pic').src")
    tab_id = worker.evaluate("async (url) => (await chrome.tabs.query({url}))[0].id", f"{site}/index.html")

    result = worker.evaluate("([src, tab]) => deepscreenCheck(src, tab)", [image_url, tab_id])
    assert result["state"] == "done", result
    assert result["source"] == "upload"
    deepfake = result["results"]["deepfake"]
    assert deepfake["label"] in ("real", "fake") and len(deepfake["evidence"]["faces"]) == 1
    badge = worker.evaluate("(tabId) => chrome.action.getBadgeText({tabId})", tab_id)
    assert badge == ("!" if deepfake["label"] == "fake" else "OK")

    popup = browser.new_page()
    popup.set_viewport_size({"width": 400, "height": 600})
    popup.goto(f"chrome-extension://{extension_id}/popup.html")
    popup.wait_for_selector("#result[data-state=done]")
    text = popup.text_content("#result")
    assert deepfake["label"] in text and f"{deepfake['score']:.3f}" in text
    assert "face 1" in text and "Not validated on real data" in text
    shot = artifacts / "extension-popup.png"
    popup.screenshot(path=str(shot))
    print(f"screenshot: {shot}")

    # The same bytes again: the server already knows them, so nothing is uploaded.
    again = worker.evaluate("([src, tab]) => deepscreenCheck(src, tab)", [image_url, tab_id])
    assert again["state"] == "done" and again["source"] == "lookup", again
    assert again["results"]["deepfake"]["score"] == pytest.approx(deepfake["score"])
    popup.reload()
    popup.wait_for_selector("#result[data-state=done]")
    assert "answered by lookup" in popup.text_content("#result")


def test_unconfigured_extension_says_what_to_do(browser: BrowserContext, site: str) -> None:
    worker = service_worker(browser)
    result = worker.evaluate("(src) => deepscreenCheck(src)", f"{site}/astronaut.jpg")
    assert result["state"] == "error" and result["error"]["code"] == "not_configured"
    assert worker.evaluate("() => chrome.action.getBadgeText({})") == "ERR"
