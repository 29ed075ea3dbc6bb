"""A headless Chromium driven over the DevTools protocol (Debian's `chromium`; no driver download).

``browser_path()`` finds it or says why not; tests skip with that reason when it is missing.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def browser_path() -> str | None:
    found = os.environ.get("TRADEWIND_TEST_CHROMIUM") or next(filter(None, map(shutil.which, CANDIDATES)), None)
    return found


NO_BROWSER = "no headless Chromium (apt-get install chromium, or set TRADEWIND_TEST_CHROMIUM): browser tests skipped"


class Page:
    """One tab: navigate, evaluate JavaScript, screenshot; console errors and exceptions are collected."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.errors: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                fut = self.pending.pop(msg["id"])
                if "error" in msg:
                    fut.set_exception(RuntimeError(f"CDP error: {msg['error']}"))
                else:
                    fut.set_result(msg.get("result", {}))
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.errors.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
            elif msg.get("method") == "Runtime.consoleAPICalled" and msg["params"]["type"] == "error":
                self.errors.append(json.dumps(msg["params"]["args"])[:500])
            elif msg.get("method") == "Log.entryAdded" and msg["params"]["entry"]["level"] == "error":
                self.errors.append(msg["params"]["entry"].get("text", "")[:500])

    async def send(self, method: str, **params: Any) -> Any:
        i = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 30)

    async def eval(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.until("document.readyState === 'complete'", 30, f"{url} to load")

    async def until(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"  # mid-navigation
        while not (value := await self.eval(guarded)):
            assert time.monotonic() < deadline, f"timed out waiting for {what} ({expression})"
            await asyncio.sleep(0.1)
        return value

    async def screenshot(self, path: Path) -> None:
        data = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))  # noqa: ASYNC240 (a test artifact, once)


class Browser:
    """``async with Browser(path, profile_dir) as page:`` a fresh headless Chromium with one tab."""

    def __init__(self, path: str, profile: Path) -> None:
        self.path, self.profile = path, profile
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Page:
        self.profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: ASYNC220 (started once, never waited on here)
            [
                self.path,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "--window-size=1400,1000",
                "--no-first-run",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert self.process.poll() is None, f"{self.path} exited with {self.process.returncode}"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port within 30 s"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{port}/json/list")
        target = next(t for t in targets if t["type"] == "page")
        self.ws = await websockets.connect(target["webSocketDebuggerUrl"], max_size=64 * 2**20)
        page = Page(self.ws)
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False
        )
        self.page = page
        return page

    async def __aexit__(self, *exc: object) -> None:
        self.page.reader.cancel()
        await self.ws.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())
