# Two commands do all the set-up:  `make train` (the main job) and `make test` (the test suite).
# Both create .venv with the CPU build of torch first: without it pip would pull the newest torch
# with several GB of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/dreamer_atari.yaml
export MUJOCO_GL ?= egl

.PHONY: setup train smoke test bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

train: setup
	$(BIN)/python -m worldmodels.fit --config $(CONFIG)

smoke: setup
	$(BIN)/python -m worldmodels.fit --config $(CONFIG) --config configs/smoke.yaml

test: setup
	WANDB_MODE=offline $(BIN)/python -m pytest -q -n 2 --dist load --maxschedchunk 1 --durations 15

bench: setup
	$(BIN)/python tools/bench_pipeline.py
