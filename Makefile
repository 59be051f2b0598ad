# Two commands for a new user: `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# GPU=cpu|cuda|metal picks how llama-cpp-python is compiled (once; pip caches the wheel).
GPU    ?= cpu
ifeq ($(GPU),cuda)
  LLAMA_CMAKE_ARGS := -DGGML_CUDA=on
else ifeq ($(GPU),metal)
  LLAMA_CMAKE_ARGS := -DGGML_METAL=on
else
  LLAMA_CMAKE_ARGS :=
endif

.PHONY: install install-dev install-bench serve serve-test-models test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: re-install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || echo 2) \
		$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

install-bench: $(VENV)/.installed-bench

# `make serve ARGS=--test-models` passes options through.
serve: install
	$(BIN)/pinaivu-local serve $(ARGS)

serve-test-models: install
	$(BIN)/pinaivu-local serve --test-models

test: install-dev
	$(BIN)/python -m pytest

# Ours against llama_cpp.server on a generated Llama-3.2-1B-shaped Q4_K_M model (generated once,
# a few minutes); `make bench ARGS="--rounds 3"` passes options through.
bench: install-bench
	$(BIN)/pinaivu-local bench $(ARGS)

lint: install-dev
	$(BIN)/ruff check pinaivu_local tests
	$(BIN)/ruff format --check pinaivu_local tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
