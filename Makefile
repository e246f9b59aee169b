# The two commands. Both run the project's own set-up first (scripts/setup.sh):
# system packages (ffmpeg, libegl1, libgl1) when missing, then a .venv with the CPU torch wheel.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@$(PY) -m pytest -q tests

clean:
	rm -rf out/demo data/ runs/ .pytest_cache
