#!/usr/bin/env python3
"""Regenerate the small real-audio set in tests/data/real_audio/ from material nobody here wrote.

    python scripts/make_real_audio.py [--out tests/data/real_audio]

Music: public-domain scores from music21's corpus, rendered to audio with fluidsynth and Debian's
TimGM6mb General MIDI soundfont. Speech: espeak-ng reading the opening of the Gettysburg Address
(1863). Silences are cut into every file (spliced in, with 10 ms fades so there is no click), and
``labels.json`` lists where, so a test can check that the video settles in them. The files come in
several formats and rates (wav, flac, mp3 at 16 / 22.05 / 44.1 / 48 kHz, mono and stereo) so that
the audio loader and the resampling to ``data.sample_rate`` are exercised.

Only needed to REGENERATE the set (tests read the committed files). It needs:

    apt-get install fluidsynth timgm6mb-soundfont espeak-ng ffmpeg
    pip install music21

Each missing tool is reported on one line (exit 2). fluidsynth renders with its reverb and chorus off,
so re-running gives the same audio; mp3 bytes can still differ across ffmpeg/LAME versions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
RENDER_SR = 48000          # fluidsynth renders here; each file is then converted to its own rate
FADE_S = 0.01              # fade at every splice, so a cut-in silence does not start with a click
PEAK_DBFS = -3.0           # every file is peak-normalised to this level before the silences go in
MAX_TOTAL_BYTES = 2_000_000

GETTYSBURG = [  # Abraham Lincoln, 1863 (public domain); one sentence per segment, a silence between them
    "Four score and seven years ago our fathers brought forth on this continent a new nation.",
    "Now we are engaged in a great civil war.",
    "We are met on a great battlefield of that war.",
]


@dataclass
class Piece:
    """One file of the set: where the audio comes from and how it is written."""

    name: str              # output file name
    style: str             # what it is, in a few words
    source: str            # the music21 corpus path, or "espeak-ng"
    sample_rate: int
    channels: int
    program: int = 0       # General MIDI program (0-based) every part plays
    bpm: float = 0.0       # playback tempo (quarter notes per minute); 0 keeps the score's
    seconds: float = 10.0  # length of the excerpt before the silences are cut in
    silences: list[tuple[float, float]] = field(default_factory=list)  # (insert at s of the excerpt, length s)
    codec_args: tuple[str, ...] = ()  # ffmpeg output options


PIECES = [
    Piece("bach_bwv66.6_organ.flac", "Bach chorale, four voices on church organ", "bach/bwv66.6",
          22050, 1, program=19, bpm=80, seconds=10.0, silences=[(4.0, 2.0)]),
    Piece("mozart_k545_piano.mp3", "piano sonata (Mozart K. 545, first movement), stereo",
          "mozart/k545/movement1_exposition", 44100, 2, program=0, bpm=120, seconds=9.0,
          silences=[(3.0, 1.5), (6.0, 2.0)], codec_args=("-c:a", "libmp3lame", "-b:a", "64k")),
    Piece("joplin_maple_leaf_rag.mp3", "rhythmic: ragtime piano (Joplin, Maple Leaf Rag)", "joplin/maple_leaf_rag",
          48000, 1, program=0, bpm=100, seconds=9.0, silences=[(5.0, 1.5)],
          codec_args=("-c:a", "libmp3lame", "-b:a", "64k")),
    Piece("speech_gettysburg.wav", "speech with pauses (espeak-ng, en-us)", "espeak-ng", 16000, 1,
          silences=[(0.0, 1.5), (0.0, 1.5)]),  # one pause after each sentence but the last (times filled in)
]


class ToolMissing(RuntimeError):
    pass


def need(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise ToolMissing(f"{tool} not found: {hint}")
    return path


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# ------------------------------------------------------------------ sources


def render_score(piece: Piece, work: Path) -> np.ndarray:
    """music21 corpus score -> MIDI (every part on ``piece.program``, tempo ``piece.bpm``) -> fluidsynth
    stereo float32 [N, 2] at RENDER_SR, cut to ``piece.seconds``."""
    try:
        from music21 import corpus, instrument, tempo
    except ImportError:
        raise ToolMissing("music21 not installed: pip install music21") from None
    score = corpus.parse(piece.source)
    for el in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
        el.activeSite.remove(el)
    for part in score.parts:
        for el in list(part.recurse().getElementsByClass(instrument.Instrument)):
            el.activeSite.remove(el)
        inst = instrument.Instrument()
        inst.midiProgram = piece.program
        part.insert(0, inst)
    score.parts[0].insert(0, tempo.MetronomeMark(number=piece.bpm))
    midi = work / (Path(piece.name).stem + ".mid")
    score.write("midi", fp=str(midi))
    wav = work / (Path(piece.name).stem + ".render.wav")
    run([need("fluidsynth", "apt-get install fluidsynth"), "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8",
         "-r", str(RENDER_SR), "-F", str(wav), str(SOUNDFONT), str(midi)])
    x, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    assert sr == RENDER_SR, sr
    return x[: int(piece.seconds * sr)]


def speak(text: str, work: Path, i: int) -> np.ndarray:
    """espeak-ng (en-us, 150 words/min) -> float32 [N, 1] at RENDER_SR."""
    raw = work / f"speech_{i}.wav"
    run([need("espeak-ng", "apt-get install espeak-ng"), "-v", "en-us", "-s", "150", "-w", str(raw), text])
    out = work / f"speech_{i}.48k.wav"
    run([need("ffmpeg", "apt-get install ffmpeg"), "-y", "-v", "error", "-i", str(raw), "-ar", str(RENDER_SR),
         "-ac", "1", str(out)])
    x, _ = sf.read(str(out), dtype="float32", always_2d=True)
    return x


# ------------------------------------------------------------------ silences


def trim_silence(x: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Leading and trailing near-silence removed (espeak pads each sentence)."""
    loud = np.flatnonzero(np.abs(x).max(axis=1) > threshold)
    return x[loud[0]: loud[-1] + 1] if loud.size else x


def fade_edges(x: np.ndarray, sr: int) -> np.ndarray:
    n = min(len(x) // 2, int(FADE_S * sr))
    if n:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def splice(pieces: list[np.ndarray], gaps_s: list[float], sr: int) -> tuple[np.ndarray, list[list[float]]]:
    """pieces[0] + zeros(gaps_s[0]) + pieces[1] + ...; returns the audio and the silence spans [start_s, end_s]."""
    out, spans, t = [], [], 0
    for i, p in enumerate(pieces):
        p = fade_edges(p, sr)
        out.append(p)
        t += len(p)
        if i < len(gaps_s):
            n = int(round(gaps_s[i] * sr))
            out.append(np.zeros((n, p.shape[1]), np.float32))
            spans.append([round(t / sr, 4), round((t + n) / sr, 4)])
            t += n
    return np.concatenate(out), spans


def cut_in_silences(x: np.ndarray, silences: list[tuple[float, float]], sr: int) -> tuple[np.ndarray, list[list[float]]]:
    """Split the excerpt at each ``(at_s, length_s)`` point (times of the excerpt) and splice zeros in there."""
    cuts = [int(at * sr) for at, _ in silences]
    parts = [x[a:b] for a, b in zip([0] + cuts, cuts + [len(x)])]
    return splice(parts, [length for _, length in silences], sr)


def normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.abs(x).max())
    return x if peak == 0 else (x * (10 ** (PEAK_DBFS / 20) / peak)).astype(np.float32)


# ------------------------------------------------------------------ writing


def encode(x: np.ndarray, piece: Piece, out_dir: Path, work: Path) -> Path:
    """float32 [N, ch] at RENDER_SR -> the piece's format, rate and channel count (ffmpeg)."""
    tmp = work / (Path(piece.name).stem + ".final.wav")
    sf.write(str(tmp), x, RENDER_SR, subtype="FLOAT")
    dest = out_dir / piece.name
    run([need("ffmpeg", "apt-get install ffmpeg"), "-y", "-v", "error", "-i", str(tmp), "-ar", str(piece.sample_rate),
         "-ac", str(piece.channels), "-map_metadata", "-1", "-fflags", "+bitexact", *piece.codec_args, str(dest)])
    return dest


def make_piece(piece: Piece, out_dir: Path, work: Path) -> dict:
    if piece.source == "espeak-ng":
        sentences = [trim_silence(speak(s, work, i)) for i, s in enumerate(GETTYSBURG)]
        audio, spans = splice([normalise(s) for s in sentences], [length for _, length in piece.silences], RENDER_SR)
    else:
        audio, spans = cut_in_silences(normalise(render_score(piece, work)), piece.silences, RENDER_SR)
    if piece.channels == 1:
        audio = audio.mean(axis=1, keepdims=True)
    dest = encode(audio, piece, out_dir, work)
    return {"style": piece.style, "source": piece.source, "sample_rate": piece.sample_rate,
            "channels": piece.channels, "duration_s": round(len(audio) / RENDER_SR, 4), "silences_s": spans,
            "bytes": dest.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/data/real_audio", help="Output folder (default: %(default)s).")
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    try:
        need("ffmpeg", "apt-get install ffmpeg")
        need("fluidsynth", "apt-get install fluidsynth")
        need("espeak-ng", "apt-get install espeak-ng")
        if not SOUNDFONT.is_file():
            raise ToolMissing(f"{SOUNDFONT} not found: apt-get install timgm6mb-soundfont")
        out_dir.mkdir(parents=True, exist_ok=True)
        labels = {}
        with tempfile.TemporaryDirectory(prefix="real_audio_") as tmp:
            for piece in PIECES:
                labels[piece.name] = make_piece(piece, out_dir, Path(tmp))
                print(f"{piece.name}: {labels[piece.name]['duration_s']:.2f} s, {labels[piece.name]['bytes']} bytes, "
                      f"silences {labels[piece.name]['silences_s']}", file=sys.stderr)
    except ToolMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"error: {e.cmd[0]} failed: {' '.join(e.stderr.decode(errors='replace').split())}", file=sys.stderr)
        return 2
    total = sum(v["bytes"] for v in labels.values())
    doc = {"about": "Silence spans cut into each file (seconds from its start; half-open [start, end)); "
                    "written by scripts/make_real_audio.py. See README.md for the sources and licenses.",
           "files": labels}
    (out_dir / "labels.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(labels)} files, {total} bytes in all, and labels.json to {out_dir}", file=sys.stderr)
    if total > MAX_TOTAL_BYTES:
        print(f"error: the set is {total} bytes, over the {MAX_TOTAL_BYTES}-byte budget: shorten the pieces",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
