# Two commands do all the set-up: `make demo` runs a real pruning search, `make test` runs the tests.
# Both create .venv and install prunetune into it (pinned by constraints.txt) the first time.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATASETS ?= $(abspath ../shared/datasets)
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench venv browser clean

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
	PRUNETUNE_DATASETS=$(DATASETS) $(BIN)/python benchmarks/devices.py

# Headless Chromium for the report.html browser test (a slow test; it skips, saying why, without one).
# Not a prerequisite of `test`: apt-get needs root, the network and a few hundred MB, and must not run
# on a developer's machine uninvited. CI (.ci/run) calls it as root.
browser:
	@if [ -x /usr/bin/chromium ]; then /usr/bin/chromium --version 2>/dev/null || true; \
	elif [ "$$(id -u)" != 0 ]; then echo "make browser: run as root (or: sudo apt-get install -y chromium)" >&2; exit 1; \
	else DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
	  || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; fi

clean:
	rm -rf $(VENV) .pytest_cache
