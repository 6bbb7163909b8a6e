# Two commands do all the set-up:  `make train` (the main job) and `make test` (the test suite).
# Both create .venv and install torch 2.13.0 first, from wherever pip is configured to look: the
# development and CI machines' local wheel index holds its CPU build. Elsewhere PyPI's Linux wheel
# brings several GB of CUDA packages; on a CPU-only machine pass the CPU index:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/dreamer_atari.yaml
TORCH_INDEX ?=
export MUJOCO_GL ?= egl

.PHONY: setup train smoke test bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
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
