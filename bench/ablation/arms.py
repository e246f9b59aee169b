"""The ablation's arms (issue 13 item 6): the recipes A-F as training and sampling overrides, the levers that arm C
can take, and arm G, the combination that the decision rule (rule.py) picks from the measured arms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .presets import FINAL_DEBUG_PROB


@dataclass(frozen=True)
class Arm:
    """One arm: training overrides (None: evaluates ``ckpt_of``'s checkpoints) and inference overrides."""

    key: str
    title: str
    train: tuple[str, ...] | None
    infer: tuple[str, ...]
    ckpt_of: str | None = None
    curriculum: bool = False  # data.audio_debug_mix_schedule_steps = half the arm's steps
    same_as: str | None = None  # G without a trained lever: this arm's runs and reports (C or F) are G's

    @property
    def slug(self) -> str:
        return "arm" + self.key

    def train_overrides(self, steps: int, seed: int) -> list[str]:
        """The arm's training overrides for ``steps`` steps and ``seed``."""
        assert self.train is not None
        out = list(self.train) + [f"diffusion.steps={steps}", f"run.seed={seed}"]
        if self.curriculum:
            out.append(f"data.audio_debug_mix_schedule_steps={max(1, steps // 2)}")
        return out

    def eval_overrides(self, seed: int) -> list[str]:
        return list(self.infer) + [f"inference.seed={seed}"]


def legacy_loader() -> bool:
    """True on code from before the mix-knob fix, where the mix knobs act only with data.reweight_variants=true.
    After it (shared.config has no such field) an explicit mix knob reweights by itself."""
    from shared.config import DataConfig

    return "reweight_variants" in DataConfig.model_fields


LEGACY_REWEIGHT = "data.reweight_variants=true"  # how the shipped model switched the mix knobs on, before the fix
_PRESSURE = ("diffusion.audio_feature_normalize_per_clip=false", "diffusion.audio_shuffle_loss_weight=0.5",
             "diffusion.audio_shuffle_negatives=hard", "diffusion.audio_shuffle_loss_space=x0",
             "diffusion.audio_shuffle_loss_type=hinge")
_MIX = ("data.audio_silence_mix_prob=0.3", f"data.audio_debug_mix_prob={FINAL_DEBUG_PROB}")
C_TRAIN = _MIX + _PRESSURE  # the shipped recipe with explicit mix knobs (its curriculum: Arm.curriculum)
_CFG2 = ("inference.audio_guidance_scale=2", "inference.audio_guidance_schedule=constant")
# The levers of D, E, F as (training overrides, inference overrides) added to arm C.
LEVERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "D": (("diffusion.audio_shuffle_negatives=band_permuted",), ()),
    "E": (("diffusion.audio_shuffle_loss_type=infonce",), ()),
    "F": ((), ("inference.audio_guidance_schedule=interval",)),
}


def with_overrides(base: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    """``base`` with every key of ``new`` replaced by ``new``'s value (order kept, new keys appended)."""
    keys = {n.split("=", 1)[0] for n in new}
    return tuple(o for o in base if o.split("=", 1)[0] not in keys) + tuple(new)


def arms(tune: bool = False, legacy: bool | None = None) -> list[Arm]:
    """Arms A-F (G is made by :func:`combination_arm` from their results). ``tune`` adds two cheap tries.

    ``legacy`` (default: :func:`legacy_loader`): on code before the mix-knob fix, A and B switch the knobs on with
    data.reweight_variants=true as the shipped model was trained, and C trains without it. After the fix, B's
    explicit knobs already reweight: C's training config is B's, so C is B's runs (same seeds: the same models)."""
    legacy = legacy_loader() if legacy is None else legacy
    rw = (LEGACY_REWEIGHT,) if legacy else ()
    c_title = "+ knobs fixed: B's mix from the explicit mix knobs alone"
    out = [
        Arm("A", "baseline: no silence clips, no shuffle pressure, per-clip normalisation, no audio CFG",
            ("data.audio_silence_mix_prob=0", f"data.audio_debug_mix_prob={FINAL_DEBUG_PROB}",
             "data.audio_debug_mix_schedule_steps=0", *rw,
             "diffusion.audio_feature_normalize_per_clip=true", "diffusion.audio_shuffle_loss_weight=0"),
            ("inference.audio_guidance_scale=1", "inference.audio_guidance_schedule=constant")),
        Arm("B", "today's best (shipped recipe): silence 0.3, debug curriculum, hard x0 hinge 0.5, audio CFG 2"
            + ("; mix via data.reweight_variants" if legacy else ""), rw + C_TRAIN, _CFG2, curriculum=True),
        Arm("C", c_title, C_TRAIN, _CFG2, curriculum=True) if legacy else
        Arm("C", c_title + " (this code: B's config exactly, so B's runs)", None, _CFG2, ckpt_of="B", same_as="B"),
    ]
    base_ckpt = trained_key(out[2])
    names = {"D": "+ band-permuted negatives", "E": "+ InfoNCE", "F": "+ guidance schedule (interval, same peak)"}
    for key, (tr, inf) in LEVERS.items():
        out.append(Arm(key, f"C {names[key]}", with_overrides(C_TRAIN, tr) if tr else None,
                       with_overrides(_CFG2, inf), ckpt_of=None if tr else base_ckpt, curriculum=bool(tr)))
    if tune:
        out += [Arm("T1", "tuning: C with shuffle weight 1", with_overrides(C_TRAIN, ("diffusion.audio_shuffle_loss_weight=1",)),
                    _CFG2, curriculum=True),
                Arm("T2", "tuning: C sampled with the interval schedule at peak g = 4", None,
                    with_overrides(_CFG2, ("inference.audio_guidance_schedule=interval",
                                           "inference.audio_guidance_scale=4")), ckpt_of=base_ckpt)]
    return out


def trained_key(arm: Arm) -> str:
    """The arm whose training runs this arm's checkpoints come from (itself, or the arm it evaluates)."""
    return arm.key if arm.train is not None else str(arm.ckpt_of)


def combination_arm(chosen: list[str], all_arms: list[Arm]) -> Arm:
    """Arm G: arm C plus the chosen levers. Without a chosen training lever, G reuses C's (or F's) runs."""
    c = next(a for a in all_arms if a.key == "C")
    train, infer = C_TRAIN, c.infer
    for k in chosen:
        tr, inf = LEVERS[k]
        train, infer = with_overrides(train, tr), with_overrides(infer, inf)
    title = "best combination: C" + "".join(f" + {k}" for k in chosen) + ("" if chosen else " (no lever beat C)")
    if any(LEVERS[k][0] for k in chosen):
        return Arm("G", title, train, infer, curriculum=True)
    runs = "F" if chosen else (c.same_as or "C")
    return Arm("G", title + f": the same runs as {runs}", None, infer, ckpt_of=trained_key(c), same_as=runs)


def plan_arms(plan: dict[str, Any], tune: bool) -> list[Arm]:
    """Arms A-F (and the tuning tries) plus G when it was chosen."""
    out = arms(tune)
    if plan.get("G"):
        g = plan["G"]
        out.append(Arm("G", g["title"], tuple(g["train"]) if g["train"] else None, tuple(g["infer"]),
                       ckpt_of=g["ckpt_of"], curriculum=bool(g["train"]), same_as=g["same_as"]))
    return out
