#!/usr/bin/env bash
# One set-up for the Makefile, CI and the Docker images.
#   scripts/setup.sh [--system-only | --python-only] [--cuda] [--no-dev] [--no-gl]
# System packages: ffmpeg, libegl1, libgl1 (headless EGL through Mesa or the NVIDIA driver);
# with the dev tools also chromium, chromium-driver (the report.html test).
# Python: a .venv (or $VENV) with the package installed editable plus dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
do_system=1 do_python=1 cuda=0 dev=1 gl=1
for arg in "$@"; do
  case "$arg" in
    --system-only) do_python=0 ;;
    --python-only) do_system=0 ;;
    --cuda) cuda=1 ;;          # keep the CUDA torch of the base image (no CPU pin)
    --no-dev) dev=0 ;;         # images: no pytest/hadolint
    --no-gl) gl=0 ;;           # trainer image: no EGL/GL packages
    *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

need_pkgs() {
  local missing=()
  command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
  if [ "$dev" = 1 ]; then  # the report.html and live page tests drive Debian's headless chromium (selenium + chromedriver)
    for p in chromium chromium-driver; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
  fi
  [ "$gl" = 1 ] || { echo "${missing[@]:-}"; return; }
  for p in libegl1 libgl1; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

if [ "$do_system" = 1 ]; then
  missing=$(need_pkgs)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "setup: installing system packages: $missing"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # shellcheck disable=SC2086
      apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "setup: missing system packages: $missing" >&2
      echo "run:   sudo apt-get update && sudo apt-get install -y --no-install-recommends $missing" >&2
      exit 1
    fi
  fi
fi

if [ "$do_python" = 1 ]; then
  stamp="$VENV/.synesthete-installed"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  # Re-install only when the dependency list changed (keeps `make test` fast on a warm tree).
  want=$(cat pyproject.toml requirements/*.txt | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing Python packages into $VENV (first run: about a minute)"
    pip_q() { "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v -e "is ignored: it is neither" -e "^  " || true; }; }
    pip_q --upgrade pip
    if [ "$cuda" = 0 ]; then
      pip_q -r requirements/cpu.txt
    fi
    if [ "$dev" = 1 ]; then pip_q -e ".[dev]"; else pip_q -e .; fi
    echo "$want" > "$stamp"
  fi
fi
