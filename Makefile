# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := $(CURDIR)/model_repository
export MODEL_REPOSITORY ?= $(MODELS)

.PHONY: run test install models services lint bench clean

$(STAMP): setup.cfg pyproject.toml requirements-build-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,build]'
	$(BIN)/pip install -q --no-deps -r requirements-build-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	$(BIN)/deepscreen models build

run: models
	$(BIN)/deepscreen up

services:
	bash scripts/ensure_services.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: services models lint
	TEST_MODEL_REPOSITORY=$(MODEL_REPOSITORY) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The benchmarks of issue 7 (docs/benchmarks.md); each prints its table and its exact command.
bench: models
	$(BIN)/python bench/deepfake_offline.py
	$(BIN)/python bench/end_to_end.py
	$(BIN)/python bench/bentoml_peer.py
	$(BIN)/python bench/road.py
	$(BIN)/python bench/scan_folder.py
	$(BIN)/python bench/worker_memory.py
	$(BIN)/python bench/worker_drain.py
	$(BIN)/python bench/multipart_parse.py
	$(BIN)/python -m bench.models --repository $(MODEL_REPOSITORY)

clean:
	rm -rf $(VENV) var model_repository .pytest_cache .ruff_cache .mypy_cache
