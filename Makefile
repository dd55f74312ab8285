# Two commands for a new user:  `make demo`  and  `make test`.
# Both set up everything first (a virtual environment in .venv, PyTorch, the package,
# and Fashion-MNIST from Debian where apt-get is available).

PYTHON ?= python3
VENV   ?= .venv
# A CPU build of PyTorch is enough everywhere; pin it before anything else so that pip never
# resolves an unpinned `torch` to a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.dendritic-installed

.PHONY: setup demo test test-all lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py src/dendritic/csrc/ops.cpp
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" "setuptools>=77" ninja
	# No build isolation: setup.py compiles the C++ operators against the torch just installed.
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test,analysis,ray,rl]"
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: could not install Debian's dataset-fashion-mnist; the demo will download Fashion-MNIST instead"; \
	fi
	touch $(STAMP)

demo: setup
	$(BIN)/dendritic demo

test: setup lint
	$(BIN)/python -m pytest -q

# Style (lint and formatting), the architecture (import contracts in pyproject.toml) and the types.
lint: setup
	$(BIN)/python -m ruff check src tests benchmarks examples setup.py
	$(BIN)/python -m ruff format --check src tests benchmarks examples setup.py
	$(BIN)/lint-imports
	$(BIN)/python -m mypy

test-all: setup
	$(BIN)/python -m pytest -q -m ""

bench: setup
	$(BIN)/python benchmarks/bench_epoch.py --threads 1 --repeats 3 --full-epochs --full-epochs-max 25 --out docs/benchmarks.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
