#!/usr/bin/env bash
# The rehearsal of both GPU calls (issue 27) in an environment built like the GPU image: a Python 3.12
# virtualenv holding only image packages (bench/gpu_image_packages.txt; bench/RESULTS.md, "GPU suite", has
# the command that builds it), the carried wheels (.whl/, from bench/gpu_prepare.sh) installed as the GPU
# call installs them (bench/gpu_env.sh: pip --no-index --no-deps --target SITE, SITE on PYTHONPATH), and no
# system ffmpeg on the PATH (imageio-ffmpeg's static one is put there as on the GPU machine).
#
#   bash bench/gpu_rehearse.sh --python VENV/bin/python --out DIR [--site SITE]
#
# GPU_WHL=DIR takes the wheels from DIR (gpu_prepare.sh with GPU_PYTHON_VERSION and GPU_WHL set: the torch
# steps rehearsed on another CPython, where a CPU torch is at hand).
#
# Steps, each one's output in DIR/: the carry check and an import of everything the calls reach
# (imports.txt); the model call's --smoke (model/); the suite's --smoke (suite/). Without torch in the venv
# (the image's torch is a CUDA build of several GB) the torch-free parts run: the imports but those that need
# torch (listed as not rehearsed) and the model call's datagen step; the rest is reported as not rehearsed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

py="" out="" site=""
while [ $# -gt 0 ]; do
    case "$1" in
        --python) py=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --site) site=${2:?}; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$py" ] && [ -n "$out" ] || { echo "usage: bash bench/gpu_rehearse.sh --python PY --out DIR [--site SITE]" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
site=${site:-$out/site}
rm -rf "$site" "$out/model" "$out/suite"
cd "$root"
whl=${GPU_WHL:-.whl}
compgen -G "$whl/*.whl" > /dev/null || { echo "error: no $whl/*.whl: run bash bench/gpu_prepare.sh first" >&2; exit 2; }

# a PATH like the GPU machine's: this box's tools but ffmpeg/ffprobe, the venv first
nobin=$out/bin
rm -rf "$nobin" && mkdir -p "$nobin"
for d in /usr/local/bin /usr/bin /bin; do
    for f in "$d"/*; do
        name=$(basename "$f")
        case "$name" in ffmpeg|ffprobe) continue ;; esac
        [ -e "$nobin/$name" ] || ln -s "$f" "$nobin/$name"
    done
done
export PATH=$(dirname "$py"):$nobin
unset PYTHONPATH VIRTUAL_ENV
export PYTHON=$py PY=$py OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
! command -v ffmpeg > /dev/null || { echo "error: ffmpeg still on the PATH" >&2; exit 2; }

# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
gpu_install_wheels "$site"  # exactly as the GPU call does (then PYTHONPATH=SITE)
gpu_ffmpeg_on_path
echo "rehearse: $("$py" --version), ffmpeg: $(command -v ffmpeg || echo none)" | tee "$out/env.txt"
"$py" -m pip list --format=freeze >> "$out/env.txt"

skip=()
"$py" -c "import torch" 2> /dev/null || skip=(torch)
rc=0
PYTHONPATH=$PYTHONPATH "$py" bench/gpu_carry.py --imports ${skip[@]+--skip "${skip[@]}"} > "$out/imports.txt" 2>&1 || rc=1
tail -4 "$out/imports.txt"

if [ ${#skip[@]} -eq 0 ]; then
    bash bench/gpu_model.sh --out "$out/model" --smoke --carried "$site" > "$out/model.log" 2>&1 || rc=1
    bash bench/gpu_suite.sh --out "$out/suite" --smoke --carried "$site" > "$out/suite.log" 2>&1 || rc=1
else
    echo "rehearse: no torch in $py: the model call's datagen step only; the suite and the torch steps not rehearsed"
    bash bench/gpu_model.sh --out "$out/model" --smoke --carried "$site" --steps datagen > "$out/model.log" 2>&1 || rc=1
fi
tail -3 "$out/model.log"
[ ! -f "$out/suite.log" ] || tail -3 "$out/suite.log"
echo "rehearse: exit $rc"
exit $rc
