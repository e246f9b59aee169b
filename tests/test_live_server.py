"""`trainer live --serve`'s server under clients that go away: real sockets reset mid-request and mid-stream,
and a real Ctrl-C (SIGINT) to a real `trainer live --serve` process. Loopback only."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np

from browser import free_port
from live_helpers import ROOT, make_music
from trainer.live.server import LiveServer

MODEL = ROOT / "models" / "synesthete-tiny"


def _connect(server: LiveServer, request: bytes = b"") -> socket.socket:
    s = socket.create_connection((server.host, server.port), timeout=10)
    if request:
        s.sendall(request)
    return s


def _reset(s: socket.socket) -> None:
    """Close with an RST, as a browser tearing down a tab does (SO_LINGER 0)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


def _handlers_done(timeout: float = 10.0) -> None:
    """Wait until the server has finished every connection (its handler threads are gone)."""
    deadline = time.monotonic() + timeout
    while any("process_request" in t.name for t in threading.enumerate()):
        assert time.monotonic() < deadline, [t.name for t in threading.enumerate()]
        time.sleep(0.02)


def test_connections_reset_by_the_client_leave_no_traceback(capfd):
    server = LiveServer("127.0.0.1", 0, 8.0, 32, (np.zeros(16000 * 20, np.float32), 16000), 1.0).start()
    try:
        _reset(_connect(server))  # before the request line
        keep_alive = _connect(server, _get("/stats.json"))  # between two requests of a kept-alive connection
        assert b"200 OK" in keep_alive.recv(65536)
        keep_alive.sendall(b"GET /sta")
        _reset(keep_alive)
        events = _connect(server, _get("/events"))  # mid-stream: the server keeps writing frames into it
        assert b"text/event-stream" in events.recv(65536)
        _reset(events)
        for i in range(20):
            server.on_frames(i, np.zeros((1, 32, 32, 3), np.uint8), [{"t": i, "ts": i / 8, "steps": 1, "dropped": 0,
                                                                      "latency_s": 0.01}])
        audio = _connect(server, _get("/audio.wav"))  # mid-body: 640 kB of wav
        audio.recv(1024)
        _reset(audio)
        _handlers_done()
        still = http.client.HTTPConnection(server.host, server.port, timeout=10)  # and the server still serves
        still.request("GET", "/stats.json")
        assert json.loads(still.getresponse().read())["frames"] == 20
        still.close()
    finally:
        server.shutdown()
    _handlers_done()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err


def test_one_ctrl_c_stops_a_serving_stream(tmp_path):
    """A file at real-time pace with --serve (no --exit-at-end): one SIGINT while frames are streaming ends the
    stream, closes the page's event stream and exits (it used to end the stream and keep serving until a
    second Ctrl-C)."""
    song = make_music(tmp_path / "song.wav", seconds=20.0, music_s=20.0, sr=16000)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "live", "--serve", f"127.0.0.1:{port}", "--no-wait",
                             "--checkpoint", str(MODEL), "--audio", str(song)],
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        page = _events_when_up(port, timeout=90.0)
        seen = page.makefile("rb")
        _read_until(seen, b"event: frame")  # streaming
        proc.send_signal(signal.SIGINT)
        _read_until(seen, b'"ended": true')  # the page is told that the stream ended
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode()
    assert "Traceback" not in err, err
    assert "stays up until Ctrl-C" not in err and "live: " in err.splitlines()[-1], err


def _events_when_up(port: int, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(_get("/events"))
            return s
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "trainer live --serve never listened"
            time.sleep(0.2)


def _read_until(stream, needle: bytes) -> None:
    for line in stream:
        if needle in line:
            return
    raise AssertionError(f"the event stream ended before {needle!r}")
