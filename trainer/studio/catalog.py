"""What the studio may touch: the audio files of its folder, the shipped models, the runs under ``--runs`` and
their checkpoints, and its own output folder. The page names things by the ids listed here; any other id, and
any path that resolves outside these folders, is refused (:class:`Refused`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shared.audio_io import AUDIO_SUFFIXES, audio_files_in, load_audio
from shared.errors import AudioError, SynestheteError
from trainer.eval.clips import list_audio_files
from trainer.models import SHIPPED, model_defaults, shipped_model


class Refused(SynestheteError):
    """A name or path the studio was not started with."""


UPLOADS = "uploads"     # under the output folder
UPLOAD_PREFIX = "upload/"  # an uploaded song's name on the page


def slug(text: str) -> str:
    """A safe file-name part: letters, digits, ``._-`` (no separators, no leading dots)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80] or "x"


def inside(path: Path, root: Path) -> bool:
    """``path`` (resolved, links followed) is ``root`` or under it."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def checkpoints(run: Path) -> list[Path]:
    """A run's ``ckpt/step-*`` directories, oldest first (by step number)."""
    steps = [p for p in (run / "ckpt").glob("step-*") if p.is_dir()]
    return sorted(steps, key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)


@dataclass
class Catalog:
    audio_dir: Path
    runs_dir: Path | None
    out_dir: Path
    max_upload: int = 64 * 2 ** 20  # bytes

    @property
    def uploads(self) -> Path:
        return self.out_dir / UPLOADS

    def audio(self) -> dict[str, Path]:
        """The folder's audio files by name, then the uploaded ones as ``upload/NAME``."""
        found = {p.name: p for p in list_audio_files(self.audio_dir)}
        if self.uploads.is_dir():
            found.update({UPLOAD_PREFIX + p.name: p for p in audio_files_in(self.uploads)})
        return found

    def models(self) -> dict[str, Path]:
        """``shipped/NAME``, ``runs/RUN`` (its latest checkpoint) and ``runs/RUN/ckpt/step-N`` -> path."""
        out: dict[str, Path] = {}
        for name in SHIPPED:
            found = shipped_model(name)
            if found is not None:
                out[f"shipped/{name}"] = found
        if self.runs_dir is not None and self.runs_dir.is_dir():
            for run in sorted(p for p in self.runs_dir.iterdir() if p.is_dir()):
                steps = checkpoints(run)
                if not steps or not inside(run, self.runs_dir):
                    continue
                out[f"runs/{run.name}"] = run
                for step in steps:
                    out[f"runs/{run.name}/ckpt/{step.name}"] = step
        return out

    def listing(self) -> dict:
        """The page's choices: audio names, models (id, guidance the model was saved with)."""
        models = [{"id": k, "guidance": model_defaults(p).get("inference.audio_guidance_scale")}
                  for k, p in self.models().items()]
        return {"audio": sorted(self.audio()), "models": models}

    def audio_path(self, name: str) -> Path:
        found = self.audio().get(name)
        root = self.uploads if name.startswith(UPLOAD_PREFIX) else self.audio_dir
        if found is None or not inside(found, root):
            raise Refused(f"audio {name!r}: not a file of {self.audio_dir}")
        return found

    def model_path(self, model_id: str) -> Path:
        found = self.models().get(model_id)
        if found is None:
            raise Refused(f"model {model_id!r}: not a shipped model or a run under --runs")
        return found

    def output_file(self, rel: str) -> Path:
        """A file of the output folder by its relative path; anything resolving outside it is refused."""
        path = self.out_dir / rel
        if not inside(path, self.out_dir) or not path.is_file():
            raise Refused(f"{rel!r}: not a file of the studio's output folder")
        return path

    def store_upload(self, filename: str, data: bytes) -> str:
        """Keep an uploaded song under the output folder's uploads/ (a safe name, never overwriting); returns its
        page name. Refused: over ``max_upload`` bytes, not an audio suffix, or bytes no decoder reads."""
        if len(data) > self.max_upload:
            raise Refused(f"upload: {len(data)} bytes is over the limit of {self.max_upload}")
        name = slug(Path(filename).name)
        if Path(name).suffix.lower() not in AUDIO_SUFFIXES:
            raise Refused(f"upload {filename!r}: not an audio file name ({' '.join(AUDIO_SUFFIXES)})")
        self.uploads.mkdir(parents=True, exist_ok=True)
        path, k = self.uploads / name, 1
        while path.exists():
            path, k = self.uploads / f"{Path(name).stem}-{k}{Path(name).suffix}", k + 1
        path.write_bytes(data)
        try:
            load_audio(path)
        except AudioError as e:
            path.unlink()
            raise Refused(f"upload {filename!r}: not readable audio ({str(e).splitlines()[0]})") from None
        return UPLOAD_PREFIX + path.name
