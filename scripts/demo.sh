#!/usr/bin/env bash
# The main job end to end on configs/tiny.yaml, on the CPU if there is no GPU:
# datagen run (embedded local Ray) -> inspect -> trainer vae -> cache-latents -> diffusion -> sample -> eval.
# Everything lands under $DEMO_OUT (default out/demo); re-running resumes/skips finished work (DEMO_FORCE_EVAL=1
# evaluates again even when the report is newer than the checkpoint, the data and the eval code).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
CFG=${CFG:-configs/tiny.yaml}
D=${DEMO_OUT:-out/demo}
mkdir -p "$D"
start=$(date +%s)
step() { echo; echo "== demo [$(( $(date +%s) - start ))s]: $*"; }

step "datagen run: procedural audio -> timelines -> EGL visualizers -> WebDataset shards (local Ray)"
datagen run --config "$CFG" --shards 4 --silence-mix 0.3 --out "$D/data/pixels"
datagen inspect "$D/data/pixels"

step "datagen preview: one silence/track-dropout clip with its audio"
datagen preview --config "$CFG" --seed 7 --silence-mix 1 --seconds 12 render.resolution=128 --out "$D/preview_silence.mp4"
ffmpeg -loglevel error -y -i "$D/preview_silence.mp4" -vn -ac 1 "$D/song.wav"

step "datagen visualize: every visualizer primitive on that audio (a labelled grid)"
datagen visualize --audio "$D/song.wav" --visualizer all --resolution 384 --fps 12 --out "$D/visualizers.mp4"

step "trainer vae: frame VAE"
trainer vae --config "$CFG" --data "$D/data/pixels" --out "$D/runs/vae"

step "trainer cache-latents"
trainer cache-latents --config "$CFG" --data "$D/data/pixels" --vae "$D/runs/vae" --out "$D/data/latents"

step "trainer diffusion --shuffle-weight 0.5"
trainer diffusion --config "$CFG" --latents "$D/data/latents" --out "$D/runs/diffusion" --shuffle-weight 0.5

step "trainer sample: any audio file -> mp4 with the audio muxed in"
trainer sample --audio "$D/song.wav" --checkpoint "$D/runs/diffusion" --out "$D/sample.mp4"

step "trainer eval: audio responsiveness report (kept when it is newer than the checkpoint, the data and the eval code; DEMO_FORCE_EVAL=1 evaluates again)"
keep=(--skip-current)
if [ "${DEMO_FORCE_EVAL:-0}" = 1 ]; then keep=(); fi
trainer eval --checkpoint "$D/runs/diffusion" --data "$D/data/pixels" --out "$D/eval" ${keep[@]+"${keep[@]}"}

echo
echo "== demo done in $(( $(date +%s) - start ))s. Look at:"
echo "   $D/preview_silence.mp4  (ground-truth visualizers on a silence/dropout clip)"
echo "   $D/visualizers.mp4      (all 12 primitives on the same audio)"
echo "   $D/sample.mp4           (generated video for $D/song.wav)"
echo "   $D/eval/report.html     (the verdict first: does it follow the music? then per variant, normal music first: floor, generated, ceiling with 95% CIs; plots, side-by-side videos; also report.md/.json)"
