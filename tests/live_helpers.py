"""Real audio for the live-mode tests, made at tiny length: ffmpeg-synthesised music and committed speech."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "data" / "live" / "speech.flac"  # espeak-ng speech, 3.95 s at 16 kHz (see its README)

# 120 BPM: a decaying 60 Hz kick on every beat, noise hats between, a triad that changes every 2 s;
# silence after ``music_s`` seconds (the silence channel must switch on).
_MUSIC = ("0.7*sin(2*PI*60*mod(t,0.5))*exp(-9*mod(t,0.5))"
          "+0.06*(2*random(0)-1)*exp(-40*mod(t+0.25,0.5))"
          "+0.08*(sin(2*PI*if(lt(mod(t,4),2),220,196)*t)+sin(2*PI*if(lt(mod(t,4),2),277.2,246.9)*t)"
          "+sin(2*PI*if(lt(mod(t,4),2),329.6,293.7)*t))")


def make_music(path: Path, seconds: float = 5.0, music_s: float = 4.0, sr: int = 16000,
               fmt_args: tuple[str, ...] = ()) -> Path:
    """Write ffmpeg-synthesised music (then silence) to ``path`` (format from its suffix); returns it."""
    expr = f"({_MUSIC})*lt(t,{music_s})"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"aevalsrc='{expr}':s={sr}:d={seconds}", *(fmt_args or ("-ac", "1")), str(path)], check=True)
    return path
