# Two commands do everything: `make study` (set up + run the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=
OUT ?= runs/study
BUDGET ?= quick
DATA_ARG := $(if $(DATA),--data $(DATA),)

.PHONY: setup test test-all lint study clean

$(BIN)/soundformer-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU PyTorch first (a plain `torch` requirement would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0 || $(BIN)/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install -q -e '.[dev,onnx,tensorboard,wandb,ray]'
	touch $@

setup: $(BIN)/soundformer-installed

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: setup lint
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m ''

study: setup
	$(BIN)/soundformer study $(DATA_ARG) --out $(OUT) --budget $(BUDGET)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
