"""`trainer studio` (issue 25): the page in Debian's headless chromium generates an A/B of the two shipped tiny
models on a 3 s song, plays them beside the teacher with the playhead on the video's clock; paths outside the
studio's folders are refused; bad input is one line. Loopback only."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from browser import headless_chromium
from live_helpers import ROOT, make_music

FPS = 8.0  # the shipped models' frame rate


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from trainer.commands.studio import build

    root = tmp_path_factory.mktemp("studio")
    songs = root / "songs"
    songs.mkdir()
    make_music(songs / "song.wav", seconds=3.0, music_s=2.0, sr=16000)
    (root / "secret.txt").write_text("not for the page\n")
    runs = root / "runs"
    (runs / "fake" / "ckpt" / "step-5").mkdir(parents=True)
    server = build(str(songs), str(runs), str(root / "out"), 0, log=lambda m: None, max_upload_mb=0.25).start()
    yield server, root
    server.shutdown()


def _request(server, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", server.httpd.server_address[1], timeout=10)
    c.request(method, path, body=None if body is None else json.dumps(body).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def test_listing_names_the_folder_the_shipped_models_and_the_runs_checkpoints(studio):
    server, _ = studio
    code, body = _request(server, "GET", "/api/list")
    d = json.loads(body)
    assert code == 200 and d["audio"] == ["song.wav"]
    ids = [m["id"] for m in d["models"]]
    assert {"shipped/synesthete-tiny", "shipped/synesthete-tiny-live", "runs/fake", "runs/fake/ckpt/step-5"} <= set(ids)


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/files/../secret.txt", None),
    ("GET", "/files/..%2fsecret.txt", None),
    ("GET", "/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd", None),
    ("GET", "/files//etc/passwd", None),
    ("POST", "/api/generate", {"audio": "../secret.txt", "models": ["shipped/synesthete-tiny"]}),
    ("POST", "/api/generate", {"audio": "song.wav", "models": ["runs/../../secret.txt"]}),
    ("POST", "/api/generate", {"audio": "upload/../../secret.txt", "models": ["shipped/synesthete-tiny"]}),
    ("POST", "/api/generate", {"audio": "song.wav", "models": [str(ROOT / "models" / "synesthete-tiny")]}),
])
def test_a_path_outside_the_studios_folders_is_refused(studio, method, path, body):
    server, _ = studio
    code, reply = _request(server, method, path, body)
    assert code in (403, 404), (code, reply)
    assert b"not for the page" not in reply and b"root:" not in reply


def test_a_malformed_generate_request_is_a_400_with_its_reason(studio):
    server, _ = studio
    code, reply = _request(server, "POST", "/api/generate", {"audio": "song.wav", "models": []})
    assert code == 400 and "one or two model ids" in json.loads(reply)["error"]


def _upload(server, name, data):
    c = http.client.HTTPConnection("127.0.0.1", server.httpd.server_address[1], timeout=10)
    c.request("POST", "/api/upload?name=" + quote(name), body=data)
    r = c.getresponse()
    return r.status, json.loads(r.read())


def test_an_upload_is_kept_under_the_output_folder_with_a_safe_name_and_listed(studio):
    server, root = studio
    data = (root / "songs" / "song.wav").read_bytes()
    code, d = _upload(server, "../../evil song.wav", data)
    assert code == 200 and d["audio"] == "upload/evil_song.wav", d
    assert (root / "out" / "uploads" / "evil_song.wav").read_bytes() == data
    assert d["audio"] in json.loads(_request(server, "GET", "/api/list")[1])["audio"]
    assert _upload(server, "../../evil song.wav", data)[1]["audio"] == "upload/evil_song-1.wav"  # never overwrites


@pytest.mark.parametrize("name,data,why", [("noise.wav", b"not audio at all" * 10, "not readable audio"),
                                           ("song.txt", b"RIFF", "not an audio file name")])
def test_an_upload_that_is_not_audio_is_refused_and_not_kept(studio, name, data, why):
    server, root = studio
    code, d = _upload(server, name, data)
    assert code == 403 and why in d["error"], d
    assert not (root / "out" / "uploads" / name).exists()


def test_an_upload_over_the_size_limit_is_refused_unread(studio):
    server, _ = studio
    with socket.create_connection(("127.0.0.1", server.httpd.server_address[1]), timeout=10) as s:
        s.sendall(b"POST /api/upload?name=big.wav HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head


@pytest.mark.parametrize("extra,why", [([], "not found"), (["inference.steps=zero"], "inference.steps"),
                                       (["--port", "70000"], "out of range")])
def test_bad_input_is_one_line_and_exit_2(tmp_path, extra, why):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    songs = tmp_path / "nope" if not extra else ROOT / "tests" / "data" / "real_audio"
    p = subprocess.run([sys.executable, "-m", "trainer", "studio", "--audio-dir", str(songs), "--out",
                        str(tmp_path / "out"), *extra], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and why in p.stderr, p.stderr
    if not why.startswith("inference."):  # a config error names the field as every command does (two lines)
        assert p.stderr.strip().count("\n") == 0, p.stderr


PLAYHEAD_JS = """
const done = arguments[arguments.length - 1], v = document.querySelector('video');
let errs = [], t0 = null;
const sample = () => requestAnimationFrame(() => {
  errs.push(Math.abs(window.S.playhead_t - v.currentTime));
  if (t0 === null) t0 = v.currentTime;
  if (errs.length < 60 && !v.ended) setTimeout(sample, 20);
  else done({errs: errs, advanced: v.currentTime - t0, paused: v.paused});
});
v.play().then(sample).catch(e => done({error: String(e)}));
"""


def test_the_page_generates_an_ab_and_plays_it_beside_the_teacher_with_the_playhead_on_the_videos_clock(studio):
    server, root = studio
    with headless_chromium() as browser:
        browser.get(server.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not browser.execute_script(
                "return document.getElementById('modelB').options.length > 2"):
            time.sleep(0.1)
        browser.find_element("id", "upload").send_keys(str(root / "songs" / "song.wav"))  # the page's upload
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not browser.execute_script(
                "return document.getElementById('audio').value.startsWith('upload/')"):
            time.sleep(0.1)
        assert browser.execute_script("return document.getElementById('audio').value").startswith("upload/song")
        browser.execute_script("document.getElementById('modelA').value = 'shipped/synesthete-tiny';"
                               "document.getElementById('modelB').value = 'shipped/synesthete-tiny-live';"
                               "document.getElementById('seed').value = '3';"
                               "document.getElementById('go').click();")
        deadline, s = time.monotonic() + 120, {}
        while time.monotonic() < deadline:
            s = browser.execute_script("return window.S")
            if s["done"] or s["error"]:
                break
            time.sleep(0.25)
        assert s["done"] and not s["error"], s
        srcs = browser.execute_script("return Array.from(document.querySelectorAll('video')).map(v => v.src)")
        teacher = browser.execute_script("return document.getElementById('err').textContent")
        assert len(srcs) == 3 or (len(srcs) == 2 and "no teacher video" in teacher), (srcs, teacher)
        assert all("/files/" in u for u in srcs) and len(set(srcs)) == len(srcs)
        assert srcs[0].endswith("_shipped_synesthete-tiny.mp4") and srcs[1].endswith("_synesthete-tiny-live.mp4")
        assert browser.execute_script("return document.getElementById('bar').value") == 1
        assert "av_offset_ms" in browser.execute_script("return document.getElementById('metrics').textContent")
        r = browser.execute_async_script(PLAYHEAD_JS)
        assert "error" not in r, r
        assert r["advanced"] > 0.5 and max(r["errs"]) <= 1.0 / FPS, r  # within one frame of the video's clock
        browser.save_screenshot(str(root / "studio.png"))
    assert len(list((root / "out").glob("*.mp4"))) == len(srcs)
    c = http.client.HTTPConnection("127.0.0.1", server.httpd.server_address[1], timeout=10)
    c.request("GET", srcs[0][srcs[0].index("/files/"):], headers={"Range": "bytes=4-11"})
    r = c.getresponse()
    mp4 = (root / "out" / srcs[0].rsplit("/", 1)[1]).read_bytes()
    body = r.read()
    assert r.status == 206 and body == mp4[4:12] and body[:4] == b"ftyp"  # Range served from the file
    assert len(list((root / "out").glob("*upload_song*.mp4"))) == 2  # A and B of the uploaded song
