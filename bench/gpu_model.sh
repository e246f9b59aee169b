#!/usr/bin/env bash
# The GPU model call (bench/gpu_model.py says what it runs). On the GPU machine, which has no package
# access, after bench/gpu_prepare.sh filled .whl/ and .gl/ on a machine that has:
#
#   bash bench/gpu_model.sh --out DIR            # steps stop starting after 340 s (--budget-s); DIR/model.tar at the end
#   bash bench/gpu_model.sh --out DIR --smoke    # the same chain at tiny size on the CPU (no installs), ~30 s
#   bash bench/gpu_model.sh --out DIR --smoke --carried SITE   # the rehearsal (bench/RESULTS.md, "GPU suite"):
#                                                # the carried wheels installed into SITE as the GPU call does
#
# Without --smoke it prepares the machine as bench/gpu_suite.sh does (bench/gpu_env.sh). Everything else
# is passed to bench/gpu_model.py (e.g. --workers N, --budget-s S, section.key=value overrides).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

out="" smoke=0 site="" rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --smoke) smoke=1; shift ;;
        --carried) site=${2:?--carried needs a folder}; shift 2 ;;
        *) rest+=("$1"); shift ;;
    esac
done
[ -n "$out" ] || { echo "usage: bash bench/gpu_model.sh --out DIR [--smoke [--carried SITE]] [gpu_model.py options]" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"

if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi

# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
if [ "$smoke" = 0 ]; then
    gpu_require_driver "model call"
    gpu_unpack_debs
    gpu_install_wheels /tmp/site
    gpu_ffmpeg_on_path
    gpu_egl_vendor
    set -- --out "$out"
else
    if [ -n "$site" ]; then
        gpu_install_wheels "$site"
        gpu_ffmpeg_on_path
    fi
    set -- --out "$out" --smoke
fi
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_model.py "$@" ${rest[@]+"${rest[@]}"}
