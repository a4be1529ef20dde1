"""Headless Chromium driven over the DevTools protocol (a websocket, aiohttp's client): load a
page, run JavaScript in it, type, resize, screenshot. What --dump-dom cannot: interact."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp

# Background networking off: this machine's closed network refuses it, many times a start.
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
FLAGS = [*HEADLESS, "--hide-scrollbars"]
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


class Page:
    """One tab: `evaluate` a JavaScript expression, `wait_for` one to be true, and so on."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One protocol command and its result (events that arrive meanwhile are skipped)."""
        call_id = next(self._ids)
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            msg = json.loads((await self._ws.receive(timeout=60)).data)
            if msg.get("id") == call_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        """The value of `expression` (awaited when it is a promise), as JSON."""
        out = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    async def wait_for(
        self, expression: str, timeout_s: float = 30.0, *, show: str = "document.body.outerHTML"
    ) -> Any:
        """Poll until `expression` is truthy; its value. A bound on behaviour, not a timing. On
        failure the message holds the end of `show`'s value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Mid-navigation the document may not be there yet: an exception counts as false.
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"
        while True:
            value = await self.evaluate(guarded)
            if value:
                return value
            if loop.time() > deadline:
                page = str(await self.evaluate(show))
                raise AssertionError(f"not true within {timeout_s} s: {expression}\n{page[-3000:]}")
            await asyncio.sleep(0.2)

    async def navigate(self, url: str) -> None:
        """Load `url` (returns when the navigation is committed; wait_for what you need)."""
        await self.send("Page.navigate", url=url)

    async def viewport(self, width: int, height: int) -> None:
        """Lay the page out at width x height CSS pixels."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    async def screenshot(self, path: Path) -> None:
        """The whole page (beyond the viewport's height) as a PNG."""
        out = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(out["data"]))

    async def type(self, text: str) -> None:
        """Type `text` into the focused element, key by key, as a person would."""
        for ch in text:
            await self.send("Input.insertText", text=ch)


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """A headless Chromium with one blank tab, ended on exit."""
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    proc = await asyncio.create_subprocess_exec(
        exe,
        *FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        browser_ws = None
        async with asyncio.timeout(60):
            while browser_ws is None:
                line = await proc.stderr.readline()
                assert line, "chromium ended before it listened"
                if m := _LISTENING.search(line):
                    browser_ws = m.group(1).decode()
        drain = asyncio.create_task(proc.stderr.read())  # never let its pipe fill
        port = int(browser_ws.split(":")[2].split("/")[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with session.ws_connect(url, max_msg_size=64 * 2**20) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                yield page
        drain.cancel()
    finally:
        with suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
