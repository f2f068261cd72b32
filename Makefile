# Two commands do all the set-up: `make demo` runs a real pruning search, `make test` runs the tests.
# Both create .venv and install prunetune into it (pinned by constraints.txt) the first time.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATASETS ?= $(abspath ../shared/datasets)
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==$$(sed -n 's/^torch==//p' constraints.txt)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/prunetune run --run-dir runs/demo

test: $(STAMP)
	PRUNETUNE_DATASETS=$(DATASETS) $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	PRUNETUNE_DATASETS=$(DATASETS) $(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/zoo_throughput.py
	$(BIN)/python benchmarks/engine_overhead.py
	PRUNETUNE_DATASETS=$(DATASETS) $(BIN)/python benchmarks/sample_efficiency.py
	PRUNETUNE_DATASETS=$(DATASETS) $(BIN)/python benchmarks/early_stopping.py

clean:
	rm -rf $(VENV) .pytest_cache
