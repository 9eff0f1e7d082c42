# The two commands of README.md: `make serve` (run) and `make test` (test).
# Both create .venv when it is missing and install radpilot into it first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline by design: no model hub or analytics calls from any code path.
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install serve test lint unit integration bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The main job: the REST API (docs at /docs) on loopback, embedded planner, starter models.
HOST ?= 127.0.0.1
PORT ?= 8000
serve: install
	$(BIN)/radpilot serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check radpilot tests bench
	$(BIN)/mypy radpilot

test: lint
	$(BIN)/python -m pytest

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

bench: install
	$(BIN)/python bench/bench_classifier.py
	$(BIN)/python bench/bench_agent.py
	$(BIN)/python bench/bench_retrieval.py
