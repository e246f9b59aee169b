# Sourced by bench/gpu_suite.sh and bench/gpu_model.sh (bash): the GPU machine's environment, which has no
# package access, from what bench/gpu_prepare.sh gathered beside the tree.
#
#   gpu_call_args USAGE ARGS  the calls' shared options: sets out (--out DIR, made and absolute), smoke (--smoke: 1),
#                             site (--carried SITE) and rest (the other arguments, for the Python script); exit 2
#                             with USAGE when --out is missing. Call it before cd-ing to the repository root.
#   gpu_call_setup LABEL      run from the repository root after gpu_call_args: the full call prepares the machine
#                             (the five steps below, in order); --smoke --carried SITE only installs the carried
#                             wheels into SITE (the rehearsal); sets PY (.venv's Python when there is one, else
#                             python3; $PYTHON wins) and the Python arguments (--out DIR [--smoke]) in call_args
#   gpu_require_driver        exit 2 unless nvidia-smi is found (the driver's folder is put on the PATH)
#   gpu_unpack_debs           the carried GL loader .debs (.gl/*.deb) into / (root; the lent machine only)
#   gpu_install_wheels SITE   the carried wheels (.whl/*.whl, or $GPU_WHL/*.whl) into SITE (pip --no-index --no-deps --target),
#                             SITE first on PYTHONPATH
#   gpu_ffmpeg_on_path        imageio-ffmpeg's static ffmpeg on the PATH when there is no ffmpeg
#   gpu_egl_vendor            EGL pointed at the NVIDIA vendor file when the system has none
# Each reads $PY (the Python that runs the call) and is run from the repository root.

gpu_call_args() {
    local usage=$1
    shift
    out="" smoke=0 site="" rest=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) out=${2:?--out needs a directory}; shift 2 ;;
            --smoke) smoke=1; shift ;;
            --carried) site=${2:?--carried needs a folder}; shift 2 ;;
            *) rest+=("$1"); shift ;;
        esac
    done
    [ -n "$out" ] || { echo "usage: $usage" >&2; exit 2; }
    mkdir -p "$out"
    out=$(cd "$out" && pwd)  # relative to where the call was made, before the cd to the repository root
}

gpu_call_setup() {
    if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
    if [ "$smoke" = 0 ]; then
        # unpacking into / is for the lent GPU machine only: refuse anywhere without an NVIDIA driver
        gpu_require_driver "$1"
        gpu_unpack_debs
        gpu_install_wheels /tmp/site
        gpu_ffmpeg_on_path
        gpu_egl_vendor
        call_args=(--out "$out")
    else
        if [ -n "$site" ]; then  # the rehearsal: the carried wheels as the GPU call installs them, then --smoke
            gpu_install_wheels "$site"
            gpu_ffmpeg_on_path
        fi
        call_args=(--out "$out" --smoke)
    fi
    # the project itself is not installed there: the repository root on the path (spawned workers inherit it)
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    export PYTHONUNBUFFERED=1
}

gpu_require_driver() {
    if ! command -v nvidia-smi > /dev/null && [ -x /usr/local/nvidia/bin/nvidia-smi ]; then
        export PATH=/usr/local/nvidia/bin:$PATH  # the driver's folder, mounted there on the lent machine
    fi
    if ! command -v nvidia-smi > /dev/null; then
        echo "error: no nvidia-smi here: the full $1 runs on a GPU machine (on a CPU machine use --smoke)" >&2
        exit 2
    fi
}

gpu_unpack_debs() {
    if compgen -G ".gl/*.deb" > /dev/null; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
}

gpu_install_wheels() {
    local site=${1:?gpu_install_wheels needs a target folder}
    local whl=${GPU_WHL:-.whl}  # another folder only for a rehearsal on another CPython (bench/RESULTS.md)
    if compgen -G "$whl/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$whl"/*.whl
        export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    fi
}

gpu_ffmpeg_on_path() {
    if ! command -v ffmpeg > /dev/null; then
        local ff
        ff=$("$PY" -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())" 2>/dev/null || true)
        if [ -n "$ff" ]; then
            mkdir -p /tmp/ffbin && ln -sf "$ff" /tmp/ffbin/ffmpeg && export PATH=/tmp/ffbin:$PATH
        fi
    fi
}

gpu_egl_vendor() {
    local vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    if [ -f "$vendor" ] && ! compgen -G "/usr/share/glvnd/egl_vendor.d/*nvidia*.json" > /dev/null; then
        export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
    fi
}
