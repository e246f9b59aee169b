#!/usr/bin/env bash
# The prepared GPU suite (bench/gpu_suite.py says what it measures). On the GPU machine, which has no
# package access, after bench/gpu_prepare.sh filled .whl/ and .gl/ on a machine that has:
#
#   bash bench/gpu_suite.sh --out DIR            # about 4 minutes on an H200; results land in DIR as they exist
#   bash bench/gpu_suite.sh --out DIR --smoke    # the same Python entry points at tiny size on the CPU (no installs)
#
# Without --smoke it first unpacks the carried GL loader .debs into / (root: the lent machine runs
# commands as root) and the carried wheels into /tmp/site, puts imageio-ffmpeg's static ffmpeg on the
# PATH when there is no ffmpeg, and points EGL at the NVIDIA vendor file when the system has none.
# Everything after --out DIR [--smoke] is passed to bench/gpu_suite.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

out="" smoke=0 rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --smoke) smoke=1; shift ;;
        *) rest+=("$1"); shift ;;
    esac
done
[ -n "$out" ] || { echo "usage: bash bench/gpu_suite.sh --out DIR [--smoke] [gpu_suite.py options]" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)  # relative to where it was called from, before the cd below
cd "$root"

if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi

if [ "$smoke" = 0 ]; then
    # unpacking into / is for the lent GPU machine only: refuse anywhere without an NVIDIA driver
    if ! command -v nvidia-smi > /dev/null && [ -x /usr/local/nvidia/bin/nvidia-smi ]; then
        export PATH=/usr/local/nvidia/bin:$PATH  # the driver's folder, mounted there on the lent machine
    fi
    if ! command -v nvidia-smi > /dev/null; then
        echo "error: no nvidia-smi here: the full suite runs on a GPU machine (on a CPU machine use --smoke)" >&2
        exit 2
    fi
    if compgen -G ".gl/*.deb" > /dev/null; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    if compgen -G ".whl/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    if ! command -v ffmpeg > /dev/null; then
        ff=$("$PY" -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())" 2>/dev/null || true)
        if [ -n "$ff" ]; then
            mkdir -p /tmp/ffbin && ln -sf "$ff" /tmp/ffbin/ffmpeg && export PATH=/tmp/ffbin:$PATH
        fi
    fi
    vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    if [ -f "$vendor" ] && ! compgen -G "/usr/share/glvnd/egl_vendor.d/*nvidia*.json" > /dev/null; then
        export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
    fi
    set -- --out "$out"
else
    set -- --out "$out" --smoke
fi
# the project itself is not installed there: the repository root on the path (spawned workers inherit it)
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_suite.py "$@" ${rest[@]+"${rest[@]}"}
