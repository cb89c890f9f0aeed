"""The browser view and remote: a real show, a real WebSocket client, and a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from vj.engine.loop import Show, ShowConfig
from vj.output.web import WebView

pytest.importorskip("aiohttp", reason="the web view needs aiohttp (pip install 'vj[web]')")


class Running:
    """A headless show with a web view on a free port, on a thread; ``wait`` for what the loop sees."""

    def __init__(self, tmp_path: Path, **web: object) -> None:
        self.show = Show(ShowConfig(size=(320, 180), gen_size=(160, 90), headless=True, frames=1_000_000))
        self.web = WebView(0, scenes=("One", "Two"), **web)  # type: ignore[arg-type]
        self.show.add_source(self.web)
        self.seen = threading.Event()
        self.report: dict = {}
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        self.report = self.show.run()

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.web._ready.wait(60), "the web view started"
        return self

    def __exit__(self, *exc: object) -> None:
        self.show.stop()
        self.thread.join(60)

    def wait(self, check, timeout: float = 60) -> None:
        """Until ``check(show)`` holds on the loop thread."""
        done = threading.Event()
        self.show.on_frame.append(lambda s: done.set() if check(s) else None)
        assert done.wait(timeout), "the show never got there"


def test_frames_out_and_controls_in_over_the_websocket(tmp_path):
    import aiohttp

    with Running(tmp_path) as run:

        async def client() -> dict:
            got: dict = {"frames": 0}
            async with aiohttp.ClientSession() as session, session.ws_connect(run.web.url + "ws") as ws:
                hello = json.loads((await ws.receive()).data)
                got["hello"] = hello
                await ws.send_str(json.dumps({"address": "/vj/zoom", "args": [0.5]}))
                await ws.send_str(json.dumps({"address": "/vj/prompt", "args": ["a quiet reef"]}))
                for bad in (
                    "not json",
                    json.dumps({"address": "/vj/quit", "args": [1]}),
                    json.dumps({"address": "/vj/zoom", "args": ["fast"]}),
                    json.dumps({"address": "/vj/zoom", "args": [[[[1]]]]}),
                    json.dumps({"address": "/vj/prompt", "args": ["x" * 3000]}),
                    json.dumps([1, 2, 3]),
                ):
                    await ws.send_str(bad)
                while got["frames"] < 3:
                    msg = await asyncio.wait_for(ws.receive(), 60)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        img = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
                        got["frames"] += 1
                        got["shape"] = img.shape
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        got.setdefault("params", {}).update(json.loads(msg.data).get("params", {}))
            return got

        got = asyncio.run(client())
        run.wait(lambda s: s.params.target("zoom") == 0.5 and s.params.target("prompt") == "a quiet reef")
    assert got["shape"] == (90, 160, 3), "JPEG frames of the program picture"
    assert [f["name"] for f in got["hello"]["faders"]][:2] == ["zoom", "pan_x"] and got["hello"]["scenes"] == [
        "One",
        "Two",
    ]
    web = run.report["web"]
    assert web["dropped"] == 0
    assert web["rejected"] == 6 and web["messages"] == 8 and run.report["events"]["web"] == 2
    assert run.report["rejected"]["web"] == 6 and run.report["frames"] > 0


def test_beyond_loopback_the_page_wants_its_token(tmp_path):
    import urllib.error
    import urllib.request

    web = WebView(0, "0.0.0.0")
    assert web.token, "a token is made when the view is reachable from the network"
    with Running(tmp_path, token=web.token) as run:
        url = run.web.url
        base = url.split("?")[0]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base, timeout=30)
        assert e.value.code == 403
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b"<title>vj</title>" in page.read()


def chromium():
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("needs Debian chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_page_in_a_real_browser_shows_the_picture_and_drives_the_show(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    try:
        with Running(tmp_path) as run:
            browser.get(run.web.url)
            wait = WebDriverWait(browser, 60)
            view = browser.find_element(By.ID, "view")
            wait.until(lambda b: int(view.get_attribute("data-frames") or 0) >= 2 and view.get_property("naturalWidth"))
            first = int(view.get_attribute("data-frames"))
            wait.until(lambda b: int(view.get_attribute("data-frames")) >= first + 3)  # the picture keeps updating
            fader = wait.until(lambda b: b.find_element(By.ID, "fader-zoom"))
            browser.execute_script("arguments[0].value = -0.4; arguments[0].dispatchEvent(new Event('input'));", fader)
            box = browser.find_element(By.ID, "prompt")
            box.clear()
            box.send_keys("a forest made of glass")
            browser.find_element(By.ID, "send").click()
            browser.find_elements(By.CSS_SELECTOR, "#scenes button")[1].click()
            run.wait(
                lambda s: (
                    abs(s.params.target("zoom") + 0.4) < 1e-6 and s.params.target("prompt") == "a forest made of glass"
                )
            )
            browser.save_screenshot(str(tmp_path / "web.png"))
            shutil.copy(tmp_path / "web.png", Path("/tmp") / "vj-web-page.png")
    finally:
        browser.quit()
    assert run.report["events"]["web"] >= 3 and run.report["web"]["rejected"] == 0
    shot = cv2.imread(str(tmp_path / "web.png"))
    assert shot is not None and shot.std() > 10, "the screenshot shows a page, not a blank"


def test_a_page_flooding_messages_is_capped_like_an_osc_sender(tmp_path):
    import aiohttp

    with Running(tmp_path) as run:

        async def flood() -> None:
            async with aiohttp.ClientSession() as session, session.ws_connect(run.web.url + "ws") as ws:
                await ws.receive()
                for i in range(20_000):
                    await ws.send_str(json.dumps({"address": "/vj/zoom", "args": [(i % 100) / 100]}))
                await ws.send_str(json.dumps({"address": "/vj/prompt", "args": ["flood over"]}))

        asyncio.run(flood())
        run.wait(lambda s: run.web.messages >= 20_001)
    web = run.report["web"]
    assert web["dropped"] > 0 and web["messages"] == 20_001, "the excess was dropped and counted"
    assert run.report["frames"] > 0 and run.report["sources"]["web"]["alive"]
