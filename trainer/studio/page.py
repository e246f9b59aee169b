"""The studio page: inline HTML, CSS and JS, no external assets.

Pick a song, model A (and optionally B for an A/B), guidance and style seed; Generate posts a job and polls it
(a progress bar; the page never waits on the worker). When it is done the page plays A's video (with the sound),
B's and the teacher's beside it, all following A's clock, over one timeline drawn on a canvas: loudness, the
band energies as a heat map, onsets and beats, detected silence (shaded), each video's motion and brightness,
and a playhead at A's ``currentTime`` redrawn every animation frame (click the timeline to seek). Beside it: the
AV offset and the eval's per-file rows for each video. ``window.S`` (and ``#state``) exposes what the tests read.
"""

PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>Synesthete studio</title>
<style>
body{background:#111;color:#ddd;font:13px/1.4 monospace;margin:1.2em}
select,input,button{background:#222;color:#ddd;border:1px solid #555;font:inherit;padding:2px 4px}
#controls label{margin-right:1em} #videos{display:flex;gap:12px;margin:10px 0;flex-wrap:wrap}
figure{margin:0} figcaption{color:#fc6} video{width:256px;height:256px;background:#000;display:block}
canvas{background:#000;display:block;cursor:crosshair} #err{color:#f66}
table{border-collapse:collapse;margin-top:8px} td,th{border:1px solid #333;padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left} progress{width:240px;vertical-align:middle}
a{color:#8cf}
</style></head><body>
<h3>Synesthete studio</h3>
<div id="controls">
<label>song <select id="audio"></select></label>
<label>or upload <input id="upload" type="file" accept="audio/*"></label>
<label>model A <select id="modelA"></select></label>
<label>model B <select id="modelB"><option value="">(none)</option></select></label>
<label>guidance <input id="guidance" type="number" step="0.25" style="width:6em" placeholder="model's"></label>
<label>style seed <input id="seed" type="number" min="0" step="1" style="width:6em" placeholder="noise"></label>
<button id="go">Generate</button>
<progress id="bar" max="1" value="0"></progress> <span id="msg">pick a song and a model</span>
<div id="err"></div>
</div>
<div id="videos"></div>
<canvas id="timeline" width="1100" height="345"></canvas>
<div id="offset"></div>
<table id="metrics"></table>
<pre id="state" style="display:none">{}</pre>
<script>
"use strict";
const $ = id => document.getElementById(id);
const S = {jobs: 0, done: false, error: null, videos: 0, draws: 0, playhead_t: null, max_err: 0, samples: 0,
           fps: null, duration: null};
window.S = S;
let R = null, main = null, followers = [], base = null;
const COLORS = ["#4cf", "#f6c", "#fc6"];
function opt(sel, value, text) { const o = document.createElement("option"); o.value = value; o.textContent = text; sel.appendChild(o); }
function list(pick) {
  return fetch("/api/list").then(r => r.json()).then(d => {
    $("audio").innerHTML = ""; d.audio.forEach(a => opt($("audio"), a, a));
    if (pick) $("audio").value = pick;
    if (!$("modelA").options.length)
      d.models.forEach(m => { opt($("modelA"), m.id, m.id); opt($("modelB"), m.id, m.id); });
  }).catch(e => { $("err").textContent = "cannot list: " + e; });
}
list(null);
$("upload").onchange = () => {
  const f = $("upload").files[0]; if (!f) return;
  $("msg").textContent = "uploading " + f.name;
  fetch("/api/upload?name=" + encodeURIComponent(f.name), {method: "POST", body: f})
    .then(r => r.json().then(d => ({ok: r.ok, d: d}))).then(({ok, d}) => {
      if (!ok) { $("err").textContent = d.error; return; }
      $("msg").textContent = "uploaded " + d.audio; list(d.audio);
    }).catch(e => { $("err").textContent = "upload: " + e; });
};
$("go").onclick = () => {
  const models = [$("modelA").value].concat($("modelB").value ? [$("modelB").value] : []);
  const g = $("guidance").value, s = $("seed").value;
  const body = {audio: $("audio").value, models: models, guidance: g === "" ? null : Number(g),
                style_seed: s === "" ? null : parseInt(s, 10)};
  $("err").textContent = ""; S.done = false; S.error = null;
  fetch("/api/generate", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
    .then(r => r.json().then(d => ({ok: r.ok, d: d}))).then(({ok, d}) => {
      if (!ok) { S.error = d.error; $("err").textContent = d.error; return; }
      S.jobs++; poll(d.job);
    });
};
function poll(id) {
  fetch("/api/jobs/" + id).then(r => r.json()).then(j => {
    $("bar").value = j.progress; $("msg").textContent = j.message + " (" + Math.round(100 * j.progress) + "%)";
    if (j.status === "done") { show(j.result); S.done = true; }
    else if (j.status === "error") { S.error = j.message; $("err").textContent = j.message; }
    else setTimeout(() => poll(id), 250);
  });
}
function figure(v, label, muted) {
  const f = document.createElement("figure"), c = document.createElement("figcaption"), el = document.createElement("video");
  c.textContent = label; el.src = v.url; el.preload = "auto"; el.muted = muted; el.controls = !muted;
  const a = document.createElement("a"); a.href = v.url + "?download=1"; a.textContent = "download mp4";
  a.setAttribute("download", v.file);
  f.appendChild(c); f.appendChild(el); f.appendChild(a); $("videos").appendChild(f);
  return el;
}
function show(res) {
  R = res; $("videos").innerHTML = ""; followers = [];
  const all = res.videos.map((v, i) => Object.assign({label: (i ? "B: " : "A: ") + v.model}, v));
  if (res.teacher) all.push(Object.assign({label: "teacher (ground-truth visualizers)"}, res.teacher));
  all.forEach((v, i) => { const el = figure(v, v.label, i > 0); if (i === 0) main = el; else followers.push(el); });
  S.videos = all.length; S.fps = res.fps; S.duration = res.timeline.duration_s;
  R.all = all; base = drawBase(res, all); table(all);
  if (res.teacher_error) $("err").textContent = "no teacher video: " + res.teacher_error;
}
function scaleX(t, W) { return 60 + (W - 70) * t / Math.max(1e-9, R.timeline.duration_s); }
function line(g, ys, x0, W, y0, h, color, n) {
  let lo = Infinity, hi = -Infinity;
  ys.forEach(v => { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
  if (!(hi > lo)) { hi = lo + 1; }
  g.strokeStyle = color; g.beginPath();
  ys.forEach((v, i) => { if (v === null) return; const x = scaleX(i / R.fps, W), y = y0 + h - h * (v - lo) / (hi - lo);
    i ? g.lineTo(x, y) : g.moveTo(x, y); });
  g.stroke();
}
function drawBase(res, all) {
  const c = document.createElement("canvas"), W = $("timeline").width, H = $("timeline").height;
  c.width = W; c.height = H; const g = c.getContext("2d"), tl = res.timeline, fps = res.fps;
  g.fillStyle = "#000"; g.fillRect(0, 0, W, H); g.font = "11px monospace";
  const lab = (t, y) => { g.fillStyle = "#aaa"; g.fillText(t, 2, y); };
  tl.silent.forEach((s, i) => { if (s) { g.fillStyle = "#333"; g.fillRect(scaleX(i / fps, W), 0, (W - 70) / tl.n + 1, H); } });
  lab("loud", 30); line(g, tl.loudness, 60, W, 5, 45, "#eee");
  const B = tl.bands.length, top = 55, bh = 90;  // band heat map, low bands at the bottom
  let lo = Infinity, hi = -Infinity; tl.bands.forEach(r => r.forEach(v => { lo = Math.min(lo, v); hi = Math.max(hi, v); }));
  lo = Math.max(lo, hi - 2.5);  // a 50 dB range under the loudest band value
  lab("bands", top + 45);
  tl.bands.forEach((row, b) => row.forEach((v, i) => {
    const k = Math.round(255 * Math.max(0, v - lo) / Math.max(1e-9, hi - lo));
    g.fillStyle = "rgb(" + k + "," + Math.round(k * 0.6) + "," + (255 - k) / 3 + ")";
    g.fillRect(scaleX(i / fps, W), top + bh - (b + 1) * bh / B, (W - 70) / tl.n + 1, bh / B + 1); }));
  lab("onset", 162); g.fillStyle = "#fc6"; tl.onsets_s.forEach(t => g.fillRect(scaleX(t, W), 150, 1, 16));
  lab("beat", 184); g.fillStyle = "#6f6"; tl.beats_s.forEach(t => g.fillRect(scaleX(t, W), 172, 2, 16));
  lab("motion", 225); all.forEach((v, i) => line(g, v.motion, 60, W, 195, 55, COLORS[i % 3]));
  lab("bright", 290); all.forEach((v, i) => line(g, v.brightness, 60, W, 260, 55, COLORS[i % 3]));
  let lx = 60; g.fillStyle = "#aaa"; g.fillText("silence shaded; red line: playhead", lx, 338); lx += 280;
  all.forEach((v, i) => { g.fillStyle = COLORS[i % 3]; g.fillText(v.label, lx, 338); lx += 8 * v.label.length + 20; });
  return c;
}
function fmt(x) { return x === null || x === undefined ? "-" : (typeof x === "number" ? x.toFixed(3) : String(x)); }
function table(all) {
  const names = Object.keys(all[0].metrics);
  let h = "<tr><th>metric</th>" + all.map(v => "<th>" + v.label + "</th>").join("") + "</tr>";
  names.forEach(n => { h += "<tr><td>" + n + "</td>" + all.map(v => "<td>" + fmt(v.metrics[n]) + "</td>").join("") + "</tr>"; });
  $("metrics").innerHTML = h;
  $("offset").textContent = "AV offset (ms, + = picture lags sound): " +
    all.map(v => v.label + " " + fmt(v.metrics.av_offset_ms)).join(" | ");
}
$("timeline").onclick = e => {
  if (!main || !R) return; const W = $("timeline").width, x = e.offsetX * W / $("timeline").clientWidth;
  main.currentTime = Math.max(0, (x - 60) / (W - 70) * R.timeline.duration_s);
};
function frame() {
  if (main && base) {
    const t = main.currentTime, g = $("timeline").getContext("2d"), W = $("timeline").width;
    followers.forEach(f => {
      if (Math.abs(f.currentTime - t) > 0.08) f.currentTime = t;
      if (main.paused !== f.paused) { main.paused ? f.pause() : f.play().catch(() => {}); }
    });
    g.drawImage(base, 0, 0); const x = scaleX(t, W);
    g.strokeStyle = "#f33"; g.lineWidth = 2; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, $("timeline").height); g.stroke();
    g.lineWidth = 1; S.playhead_t = t; S.draws++;
  }
  $("state").textContent = JSON.stringify(S);
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
</script></body></html>
"""
