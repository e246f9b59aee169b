"""Drive Debian's headless chromium through chromedriver's W3C WebDriver protocol (JSON over HTTP, stdlib only).

Loopback only: chromedriver listens on 127.0.0.1 and the page it opens is the test's own server.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base: str, method: str, path: str, body: dict | None = None, timeout: float = 60.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}").get("value")


class Browser:
    def __init__(self, base: str, session: str):
        self.base, self.session = base, session

    def get(self, url: str) -> None:
        _call(self.base, "POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str, *args):
        return _call(self.base, "POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})


def chromium_available() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


@contextmanager
def headless_chromium():
    """A chromedriver + headless chromium session with a fresh profile; closed and removed afterwards."""
    port = free_port()
    profile = tempfile.mkdtemp(prefix="live-chromium-")
    driver = subprocess.Popen(["chromedriver", f"--port={port}", "--allowed-ips=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    session = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _call(base, "GET", "/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or driver.poll() is not None:
                    raise RuntimeError("chromedriver did not start")
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": shutil.which("chromium"), "args": CHROME_FLAGS + [f"--user-data-dir={profile}"]}}}}
        value = _call(base, "POST", "/session", caps, timeout=90)
        session = value["sessionId"]
        yield Browser(base, session)
    finally:
        if session is not None:
            try:
                _call(base, "DELETE", f"/session/{session}", timeout=30)
            except OSError:
                pass
        driver.terminate()
        try:
            driver.wait(10)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()
        shutil.rmtree(profile, ignore_errors=True)
