#!/usr/bin/env bash
# The main job end to end on configs/tiny.yaml (CPU is fine): grows with each stage of the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
CFG=${CFG:-configs/tiny.yaml}
OUT=${DEMO_OUT:-out/demo}
mkdir -p "$OUT"
start=$(date +%s)
step() { echo; echo "== demo: $* ($(( $(date +%s) - start ))s)"; }

step "datagen preview (silence variant)"
datagen preview --config "$CFG" --seed 1 --silence-mix 1 --out "$OUT/preview_silence.mp4"

echo; echo "== demo done in $(( $(date +%s) - start ))s; outputs under $OUT"
