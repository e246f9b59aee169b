# syntax=docker/dockerfile:1
# trainer: frame VAE, latent caches, audio-conditioned latent diffusion, sampling, evaluation.
# No OpenGL: the trainer never imports datagen's renderer.
#
#   docker build -f docker/trainer.Dockerfile -t REGISTRY/synesthete-trainer:TAG .
#   docker run --rm --gpus all --ipc=host -v /mnt/shared:/shared REGISTRY/synesthete-trainer:TAG \
#       diffusion --latents /shared/latents --out /shared/runs/diffusion --shuffle-weight 0.5
# Multi-GPU / multi-node (DDP): override the entrypoint with torchrun, which starts one
# `trainer` process per GPU (see README.md, "Running on a GPU cluster", docker/trainer-job.yaml, docker/slurm-trainer.sbatch):
#   docker run ... --entrypoint torchrun IMAGE --standalone --nproc-per-node 8 --no-python \
#       trainer diffusion --latents /shared/latents --out /shared/runs/diffusion

# Static ffmpeg/ffprobe (x264, AAC): the CUDA base is Ubuntu, whose ffmpeg package would pull
# hundreds of MB of codec and X libraries. Pinned by tag; digest as recorded by a public project
# (not resolved here, no Docker engine):
#   mwader/static-ffmpeg:7.1.1@sha256:11a44711684c0b9f754c047dcd64235b8b52deab251bd0e0a86f22faa160749c
# CUDA PyTorch base, pinned by tag; digest as recorded by several public projects (not
# resolved here; check with `docker buildx imagetools inspect` before a release):
#   pytorch/pytorch:2.10.0-cuda12.8-cudnn9-runtime@sha256:b85566342b86d13a67712e9315d40cdc2dad7f8d86df1aff3831f80835edbcca
# Both bases are build arguments only so that `make docker-check` (scripts/docker_check.py) can
# build this file from local stand-ins where no registry of base images is reachable (a scratch
# image holding a static ffmpeg/ffprobe; a CPU stand-in of the PyTorch base: Debian bookworm,
# Python in /opt/conda, the CPU torch wheel); leave them at their defaults.
ARG FFMPEG_IMAGE=mwader/static-ffmpeg:7.1.1
ARG PYTORCH_IMAGE=pytorch/pytorch:2.10.0-cuda12.8-cudnn9-runtime
FROM ${FFMPEG_IMAGE} AS ffmpeg

FROM ${PYTORCH_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The package goes into the base image's Python environment (/opt/conda), so that the CUDA
# build of torch that ships with the base satisfies the torch dependency and is kept.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VENV=/opt/conda \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# Ray comes in as a package dependency (unused by training); pinned like the datagen image.
ARG RAY_VERSION=2.60.0
# The compiler pins below are Ubuntu 22.04's (the default base); a stand-in base on another
# distribution passes its own versions. TORCH_CUDA=required fails the build when the base's torch
# is not a CUDA build; only the CPU stand-in base of `make docker-check` passes TORCH_CUDA=cpu.
ARG GCC_VERSION=4:11.2.0-1ubuntu1
ARG LIBC6_DEV_VERSION=2.35-0ubuntu3.*
ARG TORCH_CUDA=required

COPY --from=ffmpeg /ffmpeg /ffprobe /usr/local/bin/

# A C and a C++ compiler: torch.compile (on by default, diffusion.compile) needs gcc for Triton's CUDA
# launchers and g++ for TorchInductor's CPU kernels, and the -runtime images ship neither, so the first
# compiled step fails (pytorch#116696). The base is Ubuntu 22.04 (jammy): gcc/g++ are its metapackages
# (gcc-11, about 190 MB in all) and libc6-dev, which gcc only recommends, holds the C runtime objects
# and headers every link needs (the pins are not resolved here: no Docker engine; `trainer selftest`,
# the last step, fails the build when the compilers do not work).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        gcc="${GCC_VERSION}" \
        g++="${GCC_VERSION}" \
        libc6-dev="${LIBC6_DEV_VERSION}" \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 synesthete \
    && useradd --uid 10001 --gid 10001 --create-home --shell /bin/bash synesthete

# The same set-up script as the Makefile and CI, Python part only (the system part would add
# the GL loaders, which the trainer does not need): --cuda skips the CPU-only torch pin.
WORKDIR /opt/synesthete
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY scripts/ scripts/
COPY shared/ shared/
COPY datagen/ datagen/
COPY trainer/ trainer/
COPY configs/ configs/
RUN ffmpeg -hide_banner -encoders | grep libx264 > /dev/null \
    && printf 'ray==%s\n' "$RAY_VERSION" > /tmp/constraints.txt \
    && PIP_CONSTRAINT=/tmp/constraints.txt bash scripts/setup.sh --python-only --cuda \
    && rm /tmp/constraints.txt \
    && if [ "$TORCH_CUDA" = required ]; then \
        python -c "import torch; assert torch.version.cuda, 'the base image lost its CUDA torch'"; fi \
    && trainer --help > /dev/null \
    && install -d -o synesthete -g synesthete /workspace \
    && ln -s /opt/synesthete/configs /workspace/configs

# Runs default to runs/ under the working directory, where configs/ is the
# project's configs (so `--config configs/full.yaml` works); mount shared storage and pass --out.
WORKDIR /workspace
# The synesthete user, numeric so that Kubernetes runAsNonRoot can check it.
USER 10001:10001
# The image's self-test, as the user that runs it: imports, ffmpeg, the compilers, and a compiled forward
# of a tiny denoiser (on the CPU here: no GPU at build time; TorchInductor's CPU path needs g++ too).
RUN trainer selftest
ENTRYPOINT ["trainer"]
CMD ["--help"]
