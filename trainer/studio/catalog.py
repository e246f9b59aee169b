"""What the studio may touch: the audio files of its folder, the shipped models, the runs under ``--runs`` and
their checkpoints, and its own output folder. The page names things by the ids listed here; any other id, and
any path that resolves outside these folders, is refused (:class:`Refused`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.errors import SynestheteError
from trainer.eval.clips import list_audio_files
from trainer.models import SHIPPED, model_defaults, shipped_model


class Refused(SynestheteError):
    """A name or path the studio was not started with."""


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

    def audio(self) -> dict[str, Path]:
        """The folder's audio files by name."""
        return {p.name: p for p in list_audio_files(self.audio_dir)}

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
        if found is None or not inside(found, self.audio_dir):
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
