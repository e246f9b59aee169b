"""bench/showcase.py: the side-by-side video of one real song (teacher | models) and its contact sheet, end to end
on the shipped tiny models and a real recording; the frame-holding arithmetic checked against hand values."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("showcase", ROOT / "bench" / "showcase.py")
showcase = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(showcase)


def test_hold_index_shows_the_last_source_frame_started_by_each_output_time():
    # 8 fps source in a 12 fps video: output times 0, 1/12, 2/12, 3/12 ... -> source frames 0, 0, 1, 2, 2, 3, ...
    assert showcase.hold_index(7, 12.0, 8.0, 100).tolist() == [0, 0, 1, 2, 2, 3, 4]
    assert showcase.hold_index(4, 8.0, 8.0, 100).tolist() == [0, 1, 2, 3]
    assert showcase.hold_index(5, 8.0, 8.0, 3).tolist() == [0, 1, 2, 2, 2]  # clipped to the source


def test_parse_model_label_and_path():
    assert showcase.parse_model("arm B=runs/x") == ("arm B", "runs/x")
    assert showcase.parse_model("models/synesthete-tiny") == ("synesthete-tiny", "models/synesthete-tiny")
    with pytest.raises(Exception, match="LABEL=PATH"):
        showcase.parse_model("=runs/x")


def _probe(path: Path) -> dict[str, dict]:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,width,height,nb_read_frames,r_frame_rate", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def test_showcase_end_to_end_on_a_real_recording(tmp_path):
    """Teacher + two shipped models on 2 s of espeak-ng speech: the mp4 has the three labelled panels at the
    requested size, the song's audio and 2 s of frames; the PNG and the JSON (per source: step, size, Spearman)."""
    from PIL import Image

    stem = tmp_path / "show" / "speech"
    audio = ROOT / "tests" / "data" / "real_audio" / "speech_gettysburg.wav"
    assert showcase.main(["--audio", str(audio), "--model", f"tiny={ROOT / 'models' / 'synesthete-tiny'}",
                          "--model", str(ROOT / "models" / "synesthete-tiny-live"), "--seconds", "2",
                          "--panel", "48", "--out", str(stem)]) == 0
    streams = _probe(stem.with_suffix(".mp4"))
    assert set(streams) == {"video", "audio"}
    v = streams["video"]
    assert (v["width"], v["height"]) == (3 * 48 + 2 * showcase.GAP_PX, showcase.HEADER_PX + 48)
    assert v["r_frame_rate"] == "8/1" and int(v["nb_read_frames"]) == 16
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert [s["label"] for s in doc["sources"]] == ["teacher", "tiny", "synesthete-tiny-live"]
    assert doc["sources"][1]["step"] == 4000 and doc["sources"][0]["step"] is None
    assert all(s["frames"] == 16 and -1 <= s["loudness_motion_spearman"] <= 1 for s in doc["sources"])
    with Image.open(stem.with_suffix(".png")) as im:
        assert im.size[0] == 800 and im.size[1] > 400  # 10 in wide at dpi 80, one strip per source
    # the label strip decodes as white text on black above the panels
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(stem.with_suffix(".mp4")), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    top = np.frombuffer(raw, np.uint8).reshape(showcase.HEADER_PX + 48, -1, 3)[:showcase.HEADER_PX]
    assert top.mean() < 60 and top.max() > 200


def test_bad_model_spec_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        showcase.main(["--model", "=x", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    assert "LABEL=PATH" in capsys.readouterr().err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
