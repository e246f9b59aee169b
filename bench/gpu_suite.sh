#!/usr/bin/env bash
# The prepared GPU suite (bench/gpu_suite.py says what it measures). On the GPU machine, which has no
# package access, after bench/gpu_prepare.sh filled .whl/ and .gl/ on a machine that has:
#
#   bash bench/gpu_suite.sh --out DIR            # about 4 minutes on an H200; results land in DIR as they exist
#   bash bench/gpu_suite.sh --out DIR --smoke    # the same Python entry points at tiny size on the CPU (no installs)
#   bash bench/gpu_suite.sh --out DIR --smoke --carried SITE   # the rehearsal (bench/RESULTS.md, "GPU suite"):
#                                                # the carried wheels installed into SITE as the GPU call does
#
# Without --smoke it first (bench/gpu_env.sh) unpacks the carried GL loader .debs into / (root: the lent machine runs
# commands as root) and the carried wheels into /tmp/site, puts imageio-ffmpeg's static ffmpeg on the
# PATH when there is no ffmpeg, and points EGL at the NVIDIA vendor file when the system has none.
# Everything else is passed to bench/gpu_suite.py.
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
[ -n "$out" ] || { echo "usage: bash bench/gpu_suite.sh --out DIR [--smoke] [gpu_suite.py options]" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)  # relative to where it was called from, before the cd below
cd "$root"

if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi

# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
if [ "$smoke" = 0 ]; then
    # unpacking into / is for the lent GPU machine only: refuse anywhere without an NVIDIA driver
    gpu_require_driver suite
    gpu_unpack_debs
    gpu_install_wheels /tmp/site
    gpu_ffmpeg_on_path
    gpu_egl_vendor
    set -- --out "$out"
else
    if [ -n "$site" ]; then  # the rehearsal: the carried wheels as the GPU call installs them, then --smoke
        gpu_install_wheels "$site"
        gpu_ffmpeg_on_path
    fi
    set -- --out "$out" --smoke
fi
# the project itself is not installed there: the repository root on the path (spawned workers inherit it)
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_suite.py "$@" ${rest[@]+"${rest[@]}"}
