"""Debian's headless chromium for tests that open an HTML page (selenium driving chromedriver).

Only Debian's packages work here (`apt-get install chromium chromium-driver`; scripts/setup.sh installs them
with the dev tools): no browser is downloaded. Under CI (``CI=true``) a missing browser fails the test; on a
dev box without it the test skips and says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage", "--window-size=1200,900")

# Plays every <video> of the page for a moment and reports what the media element saw. The mp4s are
# h264/AAC (shared/video.py); Debian's chromium decodes both, so frames must decode and time advance.
PLAY_VIDEOS_JS = """
const done = arguments[arguments.length - 1];
const one = v => new Promise(resolve => {
  let finished = false;
  const report = extra => { if (finished) return; finished = true; resolve(Object.assign({
      src: v.getAttribute('src'), currentSrc: v.currentSrc, readyState: v.readyState, duration: v.duration,
      width: v.videoWidth, height: v.videoHeight, time: v.currentTime, decodedFrames: v.webkitDecodedFrameCount,
      audioBytes: v.webkitAudioDecodedByteCount, error: v.error ? v.error.code : null}, extra || {})); };
  if (v.error) return report();  // failed before this script ran
  v.addEventListener('error', () => report());
  const play = () => v.play().then(() => setTimeout(report, 1000)).catch(e => report({playError: String(e)}));
  if (v.readyState >= 1) play(); else v.addEventListener('loadedmetadata', play, {once: true});
  setTimeout(() => report({timedOut: true}), 10000);
});
Promise.all(Array.from(document.querySelectorAll('video')).map(one)).then(done);
"""


def free_port() -> int:
    """A free TCP port on the loopback interface (tests serve only there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_or_skip() -> tuple[str, str]:
    """Paths of chromium and chromedriver; fails under CI, skips elsewhere, when either (or selenium) is missing."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    problem = None
    try:
        import selenium  # noqa: F401
    except ImportError:
        problem = "selenium is not installed (pip install -e '.[dev]')"
    if not browser or not driver:
        problem = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {problem}")
        pytest.skip(problem)
    return browser, driver


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A selenium driver on a fresh headless chromium profile (removed afterwards)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_or_skip()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        opts = webdriver.ChromeOptions()
        opts.binary_location = browser
        for flag in FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(driver_path), options=opts)
        try:
            driver.set_script_timeout(60)
            yield driver
        finally:
            driver.quit()


def play_videos(driver, url: str) -> list[dict[str, Any]]:
    """Open ``url`` and play each of its videos for a second; one dict per <video> (see PLAY_VIDEOS_JS)."""
    driver.get(url)
    return driver.execute_async_script(PLAY_VIDEOS_JS)
