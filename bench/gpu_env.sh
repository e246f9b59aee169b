# Sourced by bench/gpu_suite.sh and bench/gpu_model.sh (bash): the GPU machine's environment, which has no
# package access, from what bench/gpu_prepare.sh gathered beside the tree.
#
#   gpu_require_driver        exit 2 unless nvidia-smi is found (the driver's folder is put on the PATH)
#   gpu_unpack_debs           the carried GL loader .debs (.gl/*.deb) into / (root; the lent machine only)
#   gpu_install_wheels SITE   the carried wheels (.whl/*.whl, or $GPU_WHL/*.whl) into SITE (pip --no-index --no-deps --target),
#                             SITE first on PYTHONPATH
#   gpu_ffmpeg_on_path        imageio-ffmpeg's static ffmpeg on the PATH when there is no ffmpeg
#   gpu_egl_vendor            EGL pointed at the NVIDIA vendor file when the system has none
# Each reads $PY (the Python that runs the call) and is run from the repository root.

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
