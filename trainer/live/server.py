"""`--serve [HOST:]PORT`: a small local page showing the live video, its counters and (for a file) its audio.

Standard library only (``http.server``), no external assets. Routes:

``/``             the page (inline HTML, CSS and JS);
``/events``       Server-Sent Events: ``hello`` (fps, resolution, whether there is audio to play), one
                  ``frame`` event per frame (index, timestamp, JPEG as base64, latency, fps and dropped
                  counters) and ``status`` events ("waiting for audio" after a stall, "ended");
``/stream.mjpg``  the same frames as MJPEG (multipart/x-mixed-replace) for plain viewers;
``/audio.wav``    the source file's audio (16-bit wav; Range requests served), when the source is a file;
``/stats.json``   the counters.

SSE rather than bare MJPEG for the page: each frame arrives with its timestamp and counters in the same
message, which the page needs to keep the picture on the audio clock. The page is a small player: it
buffers frames, starts the audio at the first buffered frame's timestamp once half a second is buffered,
shows at every tick the newest frame whose timestamp is <= ``audio.currentTime``, and pauses the audio
(buffering) if frames run out, so picture and sound never drift apart by more than a frame. Without audio
it shows the newest frame. The server binds to 127.0.0.1 unless a host is given.
"""

from __future__ import annotations

import base64
import errno
import io
import json
import queue
import re
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from shared.errors import SynestheteError

CLIENT_QUEUE = 512  # events buffered per client before the oldest are dropped (a slow client never blocks)


class ServeError(SynestheteError):
    """The page cannot be served (bad address, port in use)."""


def parse_serve(text: str) -> tuple[str, int]:
    """``"PORT"``, ``"HOST:PORT"`` or ``"[v6]:PORT"`` -> (host, port); the host defaults to 127.0.0.1."""
    m = re.fullmatch(r"(?:\[(?P<v6>[^\]]+)\]:|(?P<host>[^:\[\]]+):)?(?P<port>\d+)", text.strip())
    if not m:
        raise ServeError(f"--serve {text!r}: expected PORT or HOST:PORT (e.g. 8765 or 127.0.0.1:8765)")
    port = int(m.group("port"))
    if not 0 <= port <= 65535:
        raise ServeError(f"--serve {text!r}: port {port} is out of range 0-65535")
    return m.group("v6") or m.group("host") or "127.0.0.1", port


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def wav_bytes(wave: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, np.float32), -1, 1), int(sr), subtype="PCM_16", format="WAV")
    return buf.getvalue()


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``Range: bytes=a-b`` -> inclusive (a, b) inside ``size``; None for no/unsupported range."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else size - 1
    else:  # suffix range: the last N bytes
        a, b = max(0, size - int(m.group(2))), size - 1
    b = min(b, size - 1)
    return (a, b) if a <= b else None


class _HTTPServer(ThreadingHTTPServer):
    """http.server's threading server, quiet when a client goes away (a browser closing the tab or reloading
    resets its connections mid-request); any other error in a handler keeps its traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # ConnectionResetError, BrokenPipeError, aborted
            return
        super().handle_error(request, client_address)


def bind(host: str, port: int, handler: type, flag: str = "--serve") -> _HTTPServer:
    """A threading HTTP server on (host, port); a port in use or an address that cannot be bound is a ServeError
    naming ``flag`` (the option that chose it)."""
    try:
        return _HTTPServer((host, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ServeError(f"{flag} {host}:{port}: the port is in use (pick another with {flag} PORT)") from None
        raise ServeError(f"{flag} {host}:{port}: cannot listen there: {e.strerror or e}") from None


class Served:
    """An HTTP server answered by a daemon thread: ``_serve`` binds it, ``start`` starts it, ``url`` names it."""

    def _serve(self, host: str, port: int, handler: type, name: str, flag: str = "--serve") -> None:
        self.httpd = bind(host, port, handler, flag)
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/"

    def start(self):
        self._thread.start()
        return self

    def stop_serving(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class LiveServer(Served):
    """Serves the page and fans frames out to every connected client (a sink of the scheduler)."""

    def __init__(self, host: str, port: int, fps: float, resolution: int, audio: tuple[np.ndarray, int] | None,
                 stall_s: float, info: dict | None = None):
        self.fps, self.resolution, self.stall_s = float(fps), int(resolution), float(stall_s)
        self.audio_bytes = wav_bytes(*audio) if audio is not None else None
        self.info = dict(info or {})
        self._clients: list[queue.Queue] = []
        self._lock = threading.Lock()
        self._emits: deque[float] = deque(maxlen=256)
        self.counters = {"frames": 0, "dropped": 0, "latency_ms": None, "fps": 0.0, "waiting": False, "ended": False}
        self.client_connected = threading.Event()  # set when the first page subscribes to /events
        self._serve(host, port, type("Handler", (_Handler,), {"live": self}), "live-http")

    def shutdown(self) -> None:
        self._broadcast("status", {"ended": True, "waiting": False}, final=True)
        self.stop_serving()

    # ---------------------------------------------------------------- fan-out

    def _subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=CLIENT_QUEUE)
        with self._lock:
            self._clients.append(q)
        return q

    def _unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._clients:
                self._clients.remove(q)

    def _broadcast(self, kind: str, payload: dict, jpeg: bytes | None = None, final: bool = False) -> None:
        item = (kind, payload, jpeg, final)
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            while True:
                try:
                    q.put_nowait(item)
                    break
                except queue.Full:  # a slow client loses its oldest events, never the stream
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass

    def hello(self) -> dict:
        return {"fps": self.fps, "resolution": self.resolution, "has_audio": self.audio_bytes is not None,
                "stall_s": self.stall_s, **self.info, **self.counters}

    # ---------------------------------------------------------------- sink interface

    def on_audio(self, samples: np.ndarray) -> None:
        pass

    def on_frames(self, first: int, frames: np.ndarray, infos: list[dict]) -> None:
        now = time.monotonic()
        for frame, info in zip(frames, infos):
            self._emits.append(now)
            c = self.counters
            c["frames"] += 1
            c["dropped"] += int(info["dropped"])
            c["latency_ms"] = round(1000.0 * info["latency_s"], 1)
            span = self._emits[-1] - self._emits[0]
            c["fps"] = round((len(self._emits) - 1) / span, 2) if span > 0 else 0.0
            jpeg = encode_jpeg(frame)
            payload = {"t": info["t"], "ts": info["ts"], "steps": info["steps"], "jpeg": base64.b64encode(jpeg).decode(),
                       **{k: c[k] for k in ("frames", "dropped", "latency_ms", "fps")}}
            self._broadcast("frame", payload, jpeg)

    def on_status(self, status: dict) -> None:
        self.counters["waiting"] = bool(status.get("waiting"))
        self._broadcast("status", dict(status))

    def close(self, summary: dict | None = None) -> None:
        self.counters["ended"] = True
        self._broadcast("status", {"ended": True, "waiting": False, "summary": summary or {}})


class _Handler(BaseHTTPRequestHandler):
    live: LiveServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name): quiet
        pass

    def _send(self, code: int, ctype: str, body: bytes, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self.do_GET()

    def do_GET(self):  # noqa: N802
        path = self.path.split("?", 1)[0]  # a client gone mid-response: see _HTTPServer.handle_error
        if path == "/":
            self._send(200, "text/html; charset=utf-8", PAGE.encode())
        elif path == "/stats.json":
            self._send(200, "application/json", json.dumps(self.live.hello()).encode())
        elif path == "/audio.wav":
            self._audio()
        elif path == "/events":
            self._events()
        elif path == "/stream.mjpg":
            self._mjpeg()
        else:
            self._send(404, "text/plain", b"not found\n")

    def _audio(self) -> None:
        data = self.live.audio_bytes
        if data is None:
            self._send(404, "text/plain", b"no audio: the source is not a file\n")
            return
        self._send_ranged("audio/wav", data)

    def _send_ranged(self, ctype: str, data: bytes | Path) -> None:
        """``data`` (bytes, or a file read only where asked) whole, or the part a ``Range`` header asks for (media
        elements seek with them)."""
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        rng = byte_range(self.headers.get("Range"), size)
        a, b = rng if rng is not None else (0, size - 1)
        if isinstance(data, bytes):
            part = data[a:b + 1]
        else:
            with open(data, "rb") as f:
                f.seek(a)
                part = f.read(b + 1 - a)
        if rng is None:
            self._send(200, ctype, part, {"Accept-Ranges": "bytes"})
        else:
            self._send(206, ctype, part, {"Accept-Ranges": "bytes", "Content-Range": f"bytes {a}-{b}/{size}"})

    def _events(self) -> None:
        q = self.live._subscribe()
        self.live.client_connected.set()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self._event("hello", self.live.hello())
            while True:
                try:
                    kind, payload, _, final = q.get(timeout=1.0)
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                self._event(kind, payload)
                if final:
                    return
        finally:
            self.live._unsubscribe(q)
            self.close_connection = True

    def _event(self, kind: str, payload: dict) -> None:
        self.wfile.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _mjpeg(self) -> None:
        q = self.live._subscribe()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            while True:
                try:
                    kind, _, jpeg, final = q.get(timeout=1.0)
                except queue.Empty:
                    continue
                if final:
                    return
                if jpeg is None:
                    continue
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                self.wfile.flush()
        finally:
            self.live._unsubscribe(q)
            self.close_connection = True


PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>Synesthete live</title>
<style>
body{background:#111;color:#ddd;font:14px/1.4 monospace;margin:1.5em}
canvas{width:512px;height:512px;image-rendering:pixelated;background:#000;display:block}
#banner{color:#fc6;height:1.4em} .c{display:inline-block;min-width:9em}
</style></head><body>
<h3>Synesthete live</h3>
<div id="banner">connecting...</div>
<canvas id="view" width="32" height="32"></canvas>
<p><span class="c">latency <b id="latency">-</b> ms</span><span class="c">fps <b id="fps">-</b></span>
<span class="c">dropped <b id="dropped">0</b></span><span class="c">frames <b id="frames">0</b></span>
<span class="c">audio <b id="clock">-</b> s</span></p>
<audio id="audio" preload="auto"></audio>
<pre id="stats" style="display:none">{}</pre>
<script>
"use strict";
const view = document.getElementById("view"), ctx = view.getContext("2d"), audio = document.getElementById("audio");
const $ = id => document.getElementById(id);
const S = {received: 0, counter_changes: 0, max_sync_err: 0, sync_samples: 0, audio_start: null,
           wall_start: null, audio_now: null, wall_now: null, waiting_seen: false, ended: false, errors: [],
           shown: 0, buffering: 0, latency_ms: [], fps: [], dropped: []};
let fps = 8, hasAudio = false, started = false, buffer = [], lastCounters = "", shownTs = null;
const JITTER_S = 0.5;  // audio starts once this much video is buffered
function banner(text) { $("banner").textContent = text; }
function draw(f) { if (f.img.complete) { ctx.drawImage(f.img, 0, 0, view.width, view.height); } shownTs = f.ts; S.shown++; }
const es = new EventSource("/events");
es.addEventListener("hello", e => {
  const d = JSON.parse(e.data); fps = d.fps; hasAudio = d.has_audio;
  view.width = view.height = d.resolution; ctx.imageSmoothingEnabled = false;
  if (hasAudio) { audio.src = "/audio.wav"; }
  banner(d.waiting ? "waiting for audio" : "live");
});
es.addEventListener("frame", e => {
  const d = JSON.parse(e.data), img = new Image();
  img.src = "data:image/jpeg;base64," + d.jpeg;
  buffer.push({ts: d.ts, t: d.t, img: img});
  S.received++;
  $("latency").textContent = d.latency_ms; $("fps").textContent = d.fps;
  $("dropped").textContent = d.dropped; $("frames").textContent = d.frames;
  const counters = [d.latency_ms, d.fps, d.dropped, d.frames].join(",");
  if (counters !== lastCounters) { S.counter_changes++; lastCounters = counters; }
  if (S.latency_ms.length < 500) { S.latency_ms.push(d.latency_ms); S.fps.push(d.fps); S.dropped.push(d.dropped); }
});
es.addEventListener("status", e => {
  const d = JSON.parse(e.data);
  if (d.waiting) { S.waiting_seen = true; banner("waiting for audio"); }
  else if (d.ended) { S.ended = true; banner("stream ended"); es.close(); }
  else { banner("live"); }
});
es.onerror = () => { if (!S.ended) banner("connection lost"); };
function tick() {
  const wall = performance.now() / 1000;
  if (!buffer.length) return;
  const newest = buffer[buffer.length - 1];
  if (!hasAudio) { draw(newest); buffer = [newest]; return; }
  if (!started) {
    if (newest.ts - buffer[0].ts >= JITTER_S || S.ended) {
      started = true; audio.currentTime = buffer[0].ts;
      audio.play().catch(err => S.errors.push("play: " + err));
    }
    return;
  }
  const ct = audio.currentTime;
  if (!audio.paused && ct > newest.ts + 1 / fps && !S.ended) {  // frames ran out: buffer
    audio.pause(); S.buffering++; banner("buffering");
  } else if (audio.paused && newest.ts >= ct + JITTER_S) {
    audio.play().catch(err => S.errors.push("play: " + err)); banner("live");
  }
  let pick = null;
  for (const f of buffer) { if (f.ts <= ct + 1e-6) pick = f; else break; }
  if (pick) {
    draw(pick);
    if (!audio.paused && ct > 0) {
      if (S.audio_start === null) { S.audio_start = ct; S.wall_start = wall; }
      S.audio_now = ct; S.wall_now = wall;
      S.max_sync_err = Math.max(S.max_sync_err, Math.abs(ct - pick.ts)); S.sync_samples++;
    }
    while (buffer.length > 1 && buffer[0].ts < ct - 1.0) buffer.shift();
  }
  $("clock").textContent = ct.toFixed(2);
}
setInterval(() => { tick(); $("stats").textContent = JSON.stringify(S); }, 10);
</script></body></html>
"""
