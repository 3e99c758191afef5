"""The live page of ``demo --serve`` in headless Chromium: a task started through the API shows
a progress bar (fed by server-sent events) that reaches 100 %; a screenshot is saved to
``test-artifacts/live-page.png``.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the ``selenium`` package; when
they are missing the test fails with what to install (it is never skipped).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ai.backend.common.auth import HMACSigner

from ._cli import background

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Talks to the demo on loopback directly, whatever ``http_proxy`` says."""

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-proxy-server",  # the page is on loopback; never route it through $http_proxy
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def _browser(profile: str) -> Any:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install the Debian packages chromium and "
            "chromium-driver (apt-get install -y chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the selenium package is missing: pip install selenium (test extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_task(info: dict[str, Any], steps: int, interval: float) -> str:
    base = info["page"].rstrip("/")
    signer = HMACSigner(info["access_key"], info["secret_key"], base)
    headers = signer.sign("POST", "/api/tasks", content_type="application/json")
    body = json.dumps({"steps": steps, "interval": interval}).encode()
    request = urllib.request.Request(f"{base}/api/tasks", body, headers, method="POST")
    with _HTTP.open(request, timeout=10) as response:
        assert response.status == 201
        task_id: str = json.load(response)["task_id"]
    return task_id


def _wait(what: str, check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(0.05)


def test_live_page_shows_task_reaching_100(monkeypatch: pytest.MonkeyPatch) -> None:
    # selenium's connection to chromedriver honours $http_proxy unless no_proxy covers loopback.
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(
            name, ",".join(filter(None, [os.environ.get(name), "127.0.0.1,localhost"]))
        )
    port = _free_port()
    with (
        background("--json", "demo", "--serve", "--port", str(port)) as demo,
        tempfile.TemporaryDirectory(prefix="chromium-") as profile,
    ):
        line = demo.wait_for_line('"serving"', stream="stdout", timeout=60)
        info = json.loads(line)
        assert info["page"] == f"http://127.0.0.1:{port}/"
        browser = _browser(profile)
        from selenium.webdriver.common.by import By  # importable: _browser checked it

        try:
            browser.get(info["page"])

            def text(selector: str) -> str:
                # The page re-renders often: read in one script call, never hold elements.
                found = browser.execute_script(
                    "const e = document.querySelector(arguments[0]); return e && e.textContent;",
                    selector,
                )
                return str(found or "")

            _wait(
                "the services table listing both agents", lambda: "agent-2" in text("#services"), 20
            )
            task_id = _start_task(info, steps=40, interval=0.1)
            selector = f'.bar[data-task-id="{task_id}"]'
            seen: set[int] = set()

            def percent() -> bool:
                raw = browser.execute_script(
                    "const e = document.querySelector(arguments[0]);"
                    " return e && e.getAttribute('aria-valuenow');",
                    selector,
                )
                if raw is None:
                    return False
                seen.add(int(raw))
                return int(raw) == 100

            _wait("the task's progress bar reaching 100 %", percent, 30)
            assert any(0 < v < 100 for v in seen), f"no intermediate progress shown: {seen}"
            assert text(f'.pct[data-task-id="{task_id}"]') == "100 %"
            assert "succeeded" in text(f'.task[data-task-id="{task_id}"]')

            browser.find_element(By.ID, "start-task").click()
            _wait(
                "a second task started with the page's button",
                lambda: (
                    browser.execute_script(
                        "return document.querySelectorAll('.bar[data-task-id]').length"
                    )
                    >= 2
                ),
                10,
            )
            _wait(
                "the task's final event in the events table",
                lambda: "bgtask_done" in text("#events"),
                10,
            )
            ARTIFACTS.mkdir(exist_ok=True)
            assert browser.save_screenshot(str(ARTIFACTS / "live-page.png"))
        finally:
            browser.quit()
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.finish(timeout=30) == 0, demo.stderr
    assert (ARTIFACTS / "live-page.png").stat().st_size > 10_000
