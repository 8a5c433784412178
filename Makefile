# One entry point for a fresh machine: `make demo` (the main job: an adsorption screen) and `make test` (the layering
# contracts, then the suite).
# Both create .venv on first use and skip every install step that is already done.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.equicalc-installed
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install torch==$(TORCH_VERSION)
	$(BIN)/python -c "import torch_cluster" 2>/dev/null || $(BIN)/python -m pip install --no-build-isolation torch-cluster
	$(BIN)/python -m pip install --no-build-isolation -e ".[test,bench,train]"
	touch $(STAMP)

# the main job: *CO on Pd(111), screened with the shipped eqv2-emt-oc and verified against EMT
demo: setup
	$(BIN)/equicalc screen --bulk Pd --miller 111 --adsorbate CO --model eqv2-emt-oc --reference emt \
		--num-random 20 --workers 0 --out demo-screen

test: setup lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the import-linter contracts in pyproject.toml: which layer may import which
lint: setup
	$(BIN)/lint-imports --no-cache --no-logo

bench: setup
	$(BIN)/python bench/neighbors.py

clean-venv:
	rm -rf $(VENV)
