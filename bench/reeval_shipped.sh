#!/usr/bin/env bash
# Re-evaluate the two shipped tiny models (models/synesthete-tiny, models/synesthete-tiny-live) on today's generator
# (issue 26 item 8): the data is a pure function of config and seed, so these reports can be remade by anyone.
# The models were trained on the generator of an earlier commit (before issue 29); this evaluates them on the data
# today's generator makes from the tiny preset at the models' own 8 fps (their config.yaml; the preset moved to 12 fps
# in issue 29). Writes under WORK (default runs/reeval, ignored by git); bench/tiny_model_card.py and
# bench/live_model_card.py then copy the reports to docs/results/reports/ and write the cards' tables.
#
#   bash bench/reeval_shipped.sh [WORK]      # from the repository root; about 10-20 min of CPU on the 2-core box
set -euo pipefail
WORK=${1:-runs/reeval}
PY=${PY:-.venv/bin/python}
mkdir -p "$WORK"
# The tiny preset's config tree (bench/ablation/presets.py), as bench/responsiveness_ablation.py writes it.
$PY -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from ablation.presets import resolved_config; resolved_config('tiny', [], Path('$WORK/tiny.yaml'))"
# The preset's own data (6 train, 6 val shards) and a wider val set (18 val shards: 0-5 are the preset's own).
$PY -m datagen run --config "$WORK/tiny.yaml" render.fps=8 --executor local --no-progress --out "$WORK/data"
$PY -m datagen run --config "$WORK/tiny.yaml" --shards 1 data.val_shards=18 render.fps=8 --executor local --no-progress --out "$WORK/val18"
ev() { $PY -m trainer eval "$@" eval.write_videos=false; }
# The preset's val data: 8 clips per variant. synesthete-tiny with sampling seeds 0 and 1; the live model (seed 0).
ev --checkpoint models/synesthete-tiny --data "$WORK/data" --seed 0 --out "$WORK/eval/tiny-s0"
ev --checkpoint models/synesthete-tiny --data "$WORK/data" --seed 1 --out "$WORK/eval/tiny-s1"
ev --checkpoint models/synesthete-tiny-live --data "$WORK/data" --out "$WORK/eval/live"
# The wider set: 32 clips per variant.
ev --checkpoint models/synesthete-tiny --data "$WORK/val18" --n 32 --seed 0 --out "$WORK/eval/val18-tiny-s0"
ev --checkpoint models/synesthete-tiny --data "$WORK/val18" --n 32 --seed 1 --out "$WORK/eval/val18-tiny-s1"
ev --checkpoint models/synesthete-tiny-live --data "$WORK/val18" --n 32 --out "$WORK/eval/val18-live"
