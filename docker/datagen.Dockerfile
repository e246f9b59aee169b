# syntax=docker/dockerfile:1
# datagen: procedural audio -> GPU-shaded visualizers (headless EGL) -> WebDataset shards, on Ray.
#
#   docker build -f docker/datagen.Dockerfile -t REGISTRY/synesthete-datagen:TAG .
#   docker run --rm --gpus all -v /mnt/shared:/shared REGISTRY/synesthete-datagen:TAG \
#       run --shards 8 --silence-mix 0.3 --out /shared/pixels
#
# Base image pinned by tag. Digest of this tag as recorded by public projects (not resolved
# here: no Docker engine on the build machine); pin it with
# `docker buildx imagetools inspect python:3.11.14-slim-bookworm` before a release:
#   python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
# PYTHON_IMAGE is a build argument only so that `make docker-check` (scripts/docker_check.py) can
# build this file from a local stand-in base (Debian bookworm + Python 3.11) where no registry of
# base images is reachable; leave it at its default.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The torch dependency resolves to the CPU wheel (this image renders with EGL; it runs no CUDA
# kernels), which saves several GB of CUDA libraries. Build-time only (ARG, not ENV).
# Where that index cannot be reached, build with `--build-arg PIP_EXTRA_INDEX_URL=` (no extra
# index) and `--build-arg PIP_FIND_LINKS=URL_OR_DIR` naming a place that holds the CPU wheel of
# the pinned torch (requirements/cpu.txt); `make docker-check` serves it on loopback.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
# Every node of a Ray cluster must run the same Ray version: pin the one CI tests with.
ARG RAY_VERSION=2.60.0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VENV=/usr/local \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics,video

# System layer: ffmpeg, the libglvnd loaders (EGL, GL, OpenGL, GLES), Mesa (EGL + llvmpipe, the
# CPU fallback) and rsync (the Ray cluster launcher syncs files into the container with it).
# Debian bookworm versions pinned; refresh them with `apt-cache policy PKG` in the base image
# when a Debian point release retires one.
# On NVIDIA, the container toolkit mounts libEGL_nvidia.so.0 when NVIDIA_DRIVER_CAPABILITIES
# includes `graphics`; the glvnd vendor file below makes libEGL pick it (Mesa stays the fallback).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ffmpeg=7:5.1.9-0+deb12u1 \
        libglvnd0=1.6.0-1 \
        libegl1=1.6.0-1 \
        libgl1=1.6.0-1 \
        libopengl0=1.6.0-1 \
        libgles2=1.6.0-1 \
        libegl-mesa0=22.3.6-1+deb12u2 \
        libgl1-mesa-dri=22.3.6-1+deb12u2 \
        libglx-mesa0=22.3.6-1+deb12u2 \
        rsync=3.5.0+ds1-0+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/share/glvnd/egl_vendor.d \
    && printf '%s\n' '{' '    "file_format_version" : "1.0.0",' '    "ICD" : {' \
        '        "library_path" : "libEGL_nvidia.so.0"' '    }' '}' \
        > /usr/share/glvnd/egl_vendor.d/10_nvidia.json \
    && groupadd --gid 10001 synesthete \
    && useradd --uid 10001 --gid 10001 --create-home --shell /bin/bash synesthete

# The same set-up script as the Makefile and CI: --system-only checks that ffmpeg, ffprobe,
# libegl1 and libgl1 are present (installed and pinned above); --python-only installs the package
# and Ray into $VENV. VENV=/usr/local is the image's own Python (the script reuses an existing
# $VENV/bin/python), so `datagen` and `ray` land in /usr/local/bin, which stays on PATH even in
# the login shells that KubeRay and the Ray cluster launcher start (Debian's /etc/profile resets
# PATH and would drop a venv). The source stays at /opt/synesthete (the install is editable).
WORKDIR /opt/synesthete
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY scripts/ scripts/
COPY shared/ shared/
COPY datagen/ datagen/
COPY trainer/ trainer/
COPY configs/ configs/
RUN bash scripts/setup.sh --system-only --no-dev \
    && printf 'ray==%s\n' "$RAY_VERSION" > /tmp/constraints.txt \
    && PIP_CONSTRAINT=/tmp/constraints.txt bash scripts/setup.sh --python-only \
    && rm /tmp/constraints.txt \
    && datagen --help > /dev/null \
    && install -d -o synesthete -g synesthete /workspace \
    && ln -s /opt/synesthete/configs /workspace/configs

# Outputs default to data/pixels under the working directory, where configs/ is the
# project's configs (so `--config configs/full.yaml` works); mount shared storage and pass --out.
WORKDIR /workspace
# The synesthete user, numeric so that Kubernetes runAsNonRoot can check it.
USER 10001:10001
ENTRYPOINT ["datagen"]
CMD ["--help"]
