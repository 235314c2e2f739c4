"""Headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol, for tests that open a
page the toolbox wrote: load it, evaluate JavaScript in it, type into it, take a screenshot.

    with Chromium(tmp_path) as browser:
        browser.open(path)
        browser.evaluate("document.title")
"""
import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    def __init__(self, folder, width=1280, height=900):
        self.folder = Path(folder)
        self.width, self.height = width, height
        self.ids = itertools.count(1)
        self.proc = self.socket = None

    def __enter__(self):
        import websocket  # websocket-client: installed with the official kubernetes client

        profile = self.folder / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc):
        if self.socket:
            self.socket.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def call(self, method, wait_event=None, **params):
        """Send one DevTools command; return its result (after `wait_event` arrives, when given)."""
        ident = next(self.ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        result, seen = None, wait_event is None
        while result is None or not seen:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result = message.get("result", {})
            elif message.get("method") == wait_event:
                seen = True
        return result

    def open(self, path):
        self.call("Page.navigate", wait_event="Page.loadEventFired", url=Path(path).resolve().as_uri())

    def evaluate(self, expression):
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def type_into(self, selector, text):
        """Focus an element and type as a user would (input events fire)."""
        self.evaluate(f"(e => {{ e.focus(); e.select && e.select(); }})(document.querySelector({json.dumps(selector)}))")
        self.call("Input.insertText", text=text)

    def screenshot(self, path, full_page=True):
        params = {"format": "png"}
        if full_page:
            height = self.evaluate("document.documentElement.scrollHeight")
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": max(height, 1), "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return path
