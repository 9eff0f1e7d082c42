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

# Until the REST/Gradio server lands, the CLI is the main job: show how to use it.
serve: install
	@$(BIN)/radpilot --help
	@echo
	@echo "The web server (radpilot serve) is not built yet. Try the CLI:"
	@echo "  $(BIN)/radpilot tools list"
	@echo "  $(BIN)/radpilot tools run image_info --image ../shared/data/cxr/dicom/siim_chest_pa.dcm"
	@echo "  $(BIN)/radpilot deid IN.dcm OUT.dcm"

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
