# The two commands. Both run the project's own set-up first (scripts/setup.sh):
# system packages (ffmpeg, libegl1, libgl1) when missing, then a .venv with the CPU torch wheel.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test clean docker-check

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@$(PY) -m pytest -q tests

# Build both Docker images from local stand-in bases and run them (root; installs docker.io and
# debootstrap when missing, starts and stops its own dockerd): scripts/docker_check.py.
docker-check: setup
	@$(PY) scripts/docker_check.py $(DOCKER_CHECK_ARGS)

clean:
	rm -rf out/demo data/ runs/ .pytest_cache
