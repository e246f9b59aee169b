"""The studio's HTTP side, on the live page's server code (:mod:`trainer.live.server`: its threading server,
``_send`` and Range replies). 127.0.0.1 unless told otherwise, standard library only, no external assets. Routes:

``GET /``                  the page (:data:`trainer.studio.page.PAGE`);
``GET /api/list``          the audio files, models and checkpoints the page may pick;
``POST /api/generate``     ``{"audio", "models": [one or two ids], "guidance", "style_seed"}`` -> ``{"job": id}``;
``GET /api/jobs/ID``       a job's status, progress (0..1) and, once done, its result (videos, metrics, timeline);
``POST /api/upload?name=FILE``  the song's bytes -> ``{"audio": "upload/NAME"}`` (kept under the output folder's
                           uploads/; over the size limit 413, not audio 403);
``GET /files/NAME``        an mp4 of the studio's output folder (Range requests served; ``?download=1`` to save).

A name or path that is not one of the listed ones, or that resolves outside the folders the studio was started
with, is answered 403 with the reason; a malformed request 400.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote, urlsplit

from trainer.live.server import Served, _Handler
from trainer.studio.catalog import Refused
from trainer.studio.page import PAGE
from trainer.studio.worker import Worker

MAX_BODY = 64 * 1024  # a generate request is a few names and numbers


class BadRequest(ValueError):
    pass


def parse_generate(body: bytes) -> dict:
    """The generate request's fields, checked: one or two model ids, a finite guidance or null, an int seed or null."""
    try:
        req = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"the request is not JSON: {e}") from None
    if not isinstance(req, dict) or not isinstance(req.get("audio"), str):
        raise BadRequest("expected {\"audio\": NAME, \"models\": [ID, ...], \"guidance\": G, \"style_seed\": S}")
    models = req.get("models")
    if not isinstance(models, list) or not 1 <= len(models) <= 2 or not all(isinstance(m, str) for m in models):
        raise BadRequest("\"models\": one or two model ids")
    guidance, seed = req.get("guidance"), req.get("style_seed")
    if guidance is not None and (not isinstance(guidance, (int, float)) or not -100 <= guidance <= 100):
        raise BadRequest("\"guidance\": a number in -100..100 or null (the model's own)")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 31):
        raise BadRequest("\"style_seed\": an integer in 0..2**31-1 or null (the noise seed)")
    return {"audio": req["audio"], "models": models, "guidance": None if guidance is None else float(guidance),
            "style_seed": seed}


class StudioHandler(_Handler):
    worker: Worker

    def _json(self, code: int, obj) -> None:
        self._send(code, "application/json", json.dumps(obj).encode())

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        path = unquote(url.path)
        try:
            if path == "/":
                self._send(200, "text/html; charset=utf-8", PAGE.encode())
            elif path == "/api/list":
                self._json(200, self.worker.catalog.listing())
            elif path.startswith("/api/jobs/") and path[len("/api/jobs/"):].isdigit():
                job = self.worker.jobs.get(int(path[len("/api/jobs/"):]))
                if job is None:
                    self._json(404, {"error": "no such job"})
                else:
                    self._json(200, job.public())
            elif path.startswith("/files/"):
                self._file(path[len("/files/"):], "download" in parse_qs(url.query))
            else:
                self._send(404, "text/plain", b"not found\n")
        except Refused as e:
            self._json(403, {"error": str(e)})

    def _file(self, rel: str, download: bool) -> None:
        f = self.worker.catalog.output_file(rel)
        if download:
            self._send(200, "video/mp4", f.read_bytes(), {"Content-Disposition": f'attachment; filename="{f.name}"'})
        else:
            self._send_ranged("video/mp4", f)

    def do_POST(self):  # noqa: N802
        url = urlsplit(self.path)
        if url.path not in ("/api/generate", "/api/upload"):
            self._send(404, "text/plain", b"not found\n")
            return
        limit = MAX_BODY if url.path == "/api/generate" else self.worker.catalog.max_upload
        try:
            size = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            size = 0
        if not 0 < size <= limit:
            self.close_connection = True  # the body is not read
            self._json(413 if size > limit else 400, {"error": f"a request body of 1..{limit} bytes is expected"})
            return
        try:
            body = self.rfile.read(size)
            if url.path == "/api/upload":
                name = parse_qs(url.query).get("name", [""])[0]
                self._json(200, {"audio": self.worker.catalog.store_upload(name, body)})
                return
            req = parse_generate(body)
            job = self.worker.submit(req["audio"], req["models"], req["guidance"], req["style_seed"])
        except BadRequest as e:
            self._json(400, {"error": str(e)})
            return
        except Refused as e:
            self._json(403, {"error": str(e)})
            return
        self._json(200, {"job": job.id})


class StudioServer(Served):
    """The page and its worker on (host, port); ``start`` serves in a daemon thread."""

    def __init__(self, host: str, port: int, worker: Worker):
        self.worker = worker
        self._serve(host, port, type("Handler", (StudioHandler,), {"worker": worker}), "studio-http", flag="--port")

    def shutdown(self) -> None:
        self.stop_serving()
