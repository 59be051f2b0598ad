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

.PHONY: install install-dev serve serve-test-models browser test lint clean

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

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# `make serve ARGS=--test-models` passes options through.
serve: install
	$(BIN)/pinaivu-local serve $(ARGS)

serve-test-models: install
	$(BIN)/pinaivu-local serve --test-models

# The browser tests drive Debian's chromium; as root with apt-get it is installed, else they skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: no chromium (apt-get install chromium); the browser tests will be skipped"

test: install-dev browser
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check pinaivu_local tests
	$(BIN)/ruff format --check pinaivu_local tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
