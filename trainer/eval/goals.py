"""The goals table: what "it follows the music" means, as rules on a report's rows. One table for the project.

A goal reads one row of one variant of an eval report (``report["variants"][variant]["metrics"][metric]``) and
compares the *generated* entry with a target:

* ``"ground truth"``: ``factor`` x the ceiling (the ground-truth visualizers; for a folder of audio, the same
  visualizers rendered on each file: the teacher);
* ``"chance"``: ``factor`` x the floor, where the floor is a chance level (retrieval);
* ``"floor"``: above the floor (the same metric against audio the video was not made from), i.e. the video uses
  its own audio at all;
* ``"absolute"``: ``factor`` itself.

``lower`` goals are met at or below their target. Who reads the table:

* ``trainer eval`` (:mod:`trainer.eval.verdict`): the verdict block at the top of every report, the goals of
  the ``"verdict"`` group, decided on the 95% CIs (met / not met / undecided where the CIs overlap);
* ``bench/ablation`` (``bench/ablation/rule.py``): issue 13's goals (group ``"ablation"``), decided on the mean
  over seeds, in this table's order;
* issue 24's evidence study (``bench/ablation/study.py``): the goals of the model it ships (group ``"study"``),
  pre-registered before its first run: none is dropped or redefined after the runs.

A new goal is one line here, in the groups that should read it.
"""

from __future__ import annotations

from dataclasses import dataclass

VERDICT = "verdict"
ABLATION = "ablation"
STUDY = "study"


@dataclass(frozen=True)
class Goal:
    title: str
    variant: str
    metric: str
    reference: str   # "ground truth" (factor x ceiling), "chance" (factor x floor), "floor" or "absolute"
    factor: float
    lower: bool = False  # the goal is value <= target
    meaning: str = ""    # one line: what meeting it says about the video
    groups: tuple[str, ...] = (VERDICT,)
    fallback: str | None = None  # the metric read instead when this one has no ceiling (e.g. no sibling groups)

    @property
    def rule(self) -> str:
        if self.reference == "floor":
            return "CI above floor"
        ref = {"ground truth": f"{self.factor:g} × ground truth", "chance": f"{self.factor:g} × chance",
               "absolute": f"{self.factor:g}"}[self.reference]
        return ("≤ " if self.lower else "≥ ") + ref


BOTH = (ABLATION, VERDICT)
FOLDER = "audio_dir"  # trainer eval --audio-dir's one variant (trainer.eval.rows.FOLDER_VARIANT)

GOALS = [
    # issue 13's goals (the ablation's, in its order)
    Goal("loudness → motion Spearman", "normal", "loudness_motion_spearman", "ground truth", 0.8,
         meaning="the picture moves more when the music is louder, at least 80% as tightly as the ground truth",
         groups=BOTH),
    Goal("bands → colour/geometry R²", "normal", "bands_colour_geometry_r2", "ground truth", 0.5,
         meaning="colour and shapes follow the frequency bands at least half as well as the ground truth",
         groups=BOTH),
    Goal("retrieval top-1", "normal", "retrieval_top1", "chance", 3.0,
         meaning="a video's motion picks out its own audio among the clips' at least 3× as often as chance",
         groups=BOTH),
    Goal("style diversity at fixed audio", "normal", "style_diversity_siblings", "ground truth", 0.5,
         meaning="other style seeds give other-looking videos: at least half the ground truth's variety",
         groups=BOTH, fallback="style_diversity"),
    Goal("settle ratio (silence clips)", "silence", "silence_settle_ratio", "absolute", 0.1, lower=True,
         meaning="the picture goes still in silence: motion there ≤ 10% of motion in music", groups=BOTH),
    # issue 24's goals for the model the evidence study ships (normal music: >= 72 clips, mean of seeds)
    Goal("loudness → motion Spearman", "normal", "loudness_motion_spearman", "ground truth", 0.8,
         meaning="the picture moves more when the music is louder, at least 80% as tightly as the teacher",
         groups=(STUDY,)),
    Goal("bands → colour/geometry R²", "normal", "bands_colour_geometry_r2", "ground truth", 0.6,
         meaning="colour and shapes follow the frequency bands at least 60% as well as the teacher", groups=(STUDY,)),
    Goal("retrieval top-1", "normal", "retrieval_top1", "chance", 5.0,
         meaning="a video's motion picks out its own audio among 72 clips' at least 5× as often as chance",
         groups=(STUDY,)),
    Goal("style diversity at fixed audio", "normal", "style_diversity_siblings", "ground truth", 0.5,
         meaning="other style seeds give other-looking videos: at least half the teacher's variety",
         groups=(STUDY,), fallback="style_diversity"),
    Goal("settle ratio (silence clips)", "silence", "silence_settle_ratio", "absolute", 0.1, lower=True,
         meaning="the picture goes still in silence: motion there ≤ 10% of motion in music", groups=(STUDY,)),
    Goal("not replaying training clips", "normal", "memorisation_ratio", "absolute", 0.5,
         meaning="generated clips sit at least half as far from the training set as unseen real clips do",
         groups=(STUDY, VERDICT)),
    # the verdict's own
    Goal("loudness → motion above floor", "normal", "loudness_motion_spearman", "floor", 1.0,
         meaning="the motion follows this clip's loudness more than another clip's: it uses its audio at all"),
    # a folder of audio (no labels; the ceiling is the teacher on the same files)
    Goal("loudness → motion above floor", FOLDER, "loudness_motion_spearman", "floor", 1.0,
         meaning="the motion follows this file's loudness more than the next file's: it uses its audio at all"),
    Goal("loudness → motion Spearman", FOLDER, "loudness_motion_spearman", "ground truth", 0.8,
         meaning="the picture moves more when the music is louder, at least 80% as tightly as the visualizers "
                 "rendered on the same files"),
    Goal("retrieval top-1", FOLDER, "retrieval_top1", "chance", 3.0,
         meaning="a video's motion picks out its own file among the folder's at least 3× as often as chance"),
    Goal("shift test win rate above chance", FOLDER, "shift_test_win_rate", "floor", 1.0,
         meaning="the true alignment scores higher than the same audio shifted by 1.5-6 s: the timing matters"),
    Goal("settle ratio (files with silence)", FOLDER, "settle_ratio", "absolute", 0.1, lower=True,
         meaning="the picture goes still in detected silence: motion there ≤ 10% of motion in music"),
]


def goals_in(group: str) -> list[Goal]:
    """The goals of one group, in the table's order."""
    return [g for g in GOALS if group in g.groups]
