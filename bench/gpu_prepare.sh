#!/usr/bin/env bash
# Prepare what bench/gpu_suite.sh needs on a GPU machine that has no package access (the lent H200:
# Python 3.12 with CUDA torch, numpy, matplotlib, safetensors, PyYAML, tqdm, psutil, scipy, pillow,
# tensorboard, opencv-python-headless, numba, scikit-learn, ...: bench/gpu_image_packages.txt; no pydantic,
# webdataset, moderngl, glcontext, simplejpeg, soundfile, ffmpeg-python, librosa, no GL loader libraries,
# no ffmpeg). Run it from the repository root on a CPU machine with package access,
# after scripts/setup.sh (the versions are the dev venv's, so the GPU runs what CI tests):
#
#   bash bench/gpu_prepare.sh            # -> .whl/*.whl (cp312 manylinux) and .gl/*.deb, both git-ignored
#
# Then carry both folders to the GPU machine beside the working tree and run bench/gpu_suite.sh and
# bench/gpu_model.sh there (rehearse both first: bench/gpu_rehearse.sh; bench/RESULTS.md, "GPU suite").
# Ray is not carried (its wheel alone is over the 64 MiB the device tool carries): both calls use
# datagen's `processes` executor. ffmpeg comes as the static binary inside imageio-ffmpeg's wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
WHL=${GPU_WHL:-.whl}
GL=${GPU_GL:-.gl}
PYVER=${GPU_PYTHON_VERSION:-3.12}  # the GPU image's CPython (another only for a rehearsal: bench/RESULTS.md)
LIMIT_MIB=60  # the device tool carries 64 MiB in all, the working tree (~4 MiB) included

# What the project imports that the GPU image lacks, and what those need in turn (pip show's Requires).
# tests/test_gpu_carry.py (bench/gpu_carry.py) fails when the GPU calls reach a module that is neither
# here nor in the image's list (bench/gpu_image_packages.txt) nor the standard library.
FROM_VENV=(pydantic pydantic-core annotated-types typing-inspection webdataset braceexpand
           moderngl glcontext simplejpeg soundfile cffi pycparser typing-extensions
           ffmpeg-python future                                      # shared/audio_io.py, shared/video.py
           librosa audioread decorator pooch platformdirs soxr)      # trainer eval (trainer/eval/rhythm.py)
EXTRA=(imageio-ffmpeg==0.6.0)
# libglvnd's loaders (the NVIDIA driver brings the vendor libraries: libEGL_nvidia, libGLX_nvidia).
DEBS=(libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2)

version_of() {
    "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null \
        || { echo "gpu_prepare: $1 is not installed in $PY (run scripts/setup.sh first)" >&2; exit 2; }
}

pins=()
for name in "${FROM_VENV[@]}"; do
    pins+=("$name==$(version_of "$name")")
done
pins+=("${EXTRA[@]}")

rm -rf "$WHL" && mkdir -p "$WHL"
echo "gpu_prepare: downloading ${#pins[@]} wheels for CPython $PYVER manylinux x86_64 into $WHL/" >&2
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" \
    --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform manylinux_2_5_x86_64 --platform any -d "$WHL" "${pins[@]}"

rm -rf "$GL" && mkdir -p "$GL"
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
mkdir -p "$lists/partial"
apt_opts=(-q -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
echo "gpu_prepare: downloading ${DEBS[*]} into $GL/" >&2
apt-get "${apt_opts[@]}" update > /dev/null
(cd "$GL" && apt-get "${apt_opts[@]}" download "${DEBS[@]}" > /dev/null)

total=$(du -cb "$WHL" "$GL" | tail -1 | cut -f1)
ls -l "$WHL" "$GL" >&2
mib=$((total / 1048576))
if [ "$mib" -ge "$LIMIT_MIB" ]; then
    echo "gpu_prepare: $WHL and $GL take $mib MiB, over the $LIMIT_MIB MiB that leaves room for the tree" >&2
    exit 1
fi
echo "gpu_prepare: $(ls "$WHL" | wc -l) wheels and $(ls "$GL" | wc -l) .debs, $mib MiB in all" >&2
