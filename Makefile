# Two commands for a new user: `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# GPU=cpu|cuda|metal picks how llama-cpp-python is compiled: `make install GPU=cuda` (needs the CUDA
# toolkit's nvcc), GPU=metal (Xcode command-line tools; the default on Apple silicon), GPU=cpu.
# Without GPU=, the build already in .venv is kept.
UNAME  := $(shell uname -s)-$(shell uname -m)
BUILT  := $(patsubst $(VENV)/.llama-%,%,$(firstword $(wildcard $(VENV)/.llama-*)))
GPU    ?= $(or $(BUILT),$(if $(filter Darwin-arm64,$(UNAME)),metal,cpu))
ifeq ($(GPU),cuda)
  LLAMA_CMAKE_ARGS := -DGGML_CUDA=on
  PIP_CACHE := --no-cache-dir
else ifeq ($(GPU),metal)
  LLAMA_CMAKE_ARGS := -DGGML_METAL=on
  PIP_CACHE := --no-cache-dir
else ifeq ($(GPU),cpu)
  LLAMA_CMAKE_ARGS := $(if $(findstring Darwin,$(UNAME)),-DGGML_METAL=off,)
  PIP_CACHE :=
else
  $(error GPU must be cpu, cuda or metal, not $(GPU))
endif
# The pinned version, read from pyproject.toml so there is one place to change it.
LLAMA_CPP := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
# Every other dependency installs at the version constraints.txt names (`make lock` refreshes it), so a new
# release of any of them changes neither CI nor the single file until the lock is refreshed on purpose.
PIP_INSTALL := $(BIN)/python -m pip install --quiet -c constraints.txt

.PHONY: install install-dev install-bench serve serve-test-models browser services systemd node test test-fast lint bench dist lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: compile llama.cpp again only when GPU changes, re-install when pyproject.toml does.
# pip's wheel cache does not know CMAKE_ARGS, so GPU builds bypass it (the CPU wheel stays cached).
$(VENV)/.llama-$(GPU): | $(BIN)/python
	rm -f $(VENV)/.llama-* $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2) \
		$(BIN)/python -m pip install --quiet $(PIP_CACHE) --force-reinstall --no-deps "$(LLAMA_CPP)"
	touch $@

$(VENV)/.installed: pyproject.toml constraints.txt $(VENV)/.llama-$(GPU) | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

# instructor (tests/compat/) declares jiter<0.15 while openai needs jiter>=0.16, so no resolver installs
# both; it runs on the newer jiter, so it goes in without its declared dependencies (typer, the one it
# lacks, is in the dev extra). Its pin lives here: `make lock` cannot resolve it.
INSTRUCTOR := instructor==1.17.0

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps "$(INSTRUCTOR)"
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[bench]'
	touch $@

$(VENV)/.installed-dist: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[dist]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

install-bench: $(VENV)/.installed-bench

# Pulls missing models first (one line per failure, then serves what is there);
# `make serve ARGS=--test-models` passes options through.
serve: install
	$(BIN)/pinaivu-local serve --pull $(ARGS)

serve-test-models: install
	$(BIN)/pinaivu-local serve --test-models

# The browser tests drive Debian's chromium; as root with apt-get it is installed, else they skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: no chromium (apt-get install chromium); the browser tests will be skipped"

# The shared-state tests start Debian's Postgres and Redis servers themselves; as root with apt-get
# they are installed, else those tests skip (CI sets PINAIVU_REQUIRE_SERVICES=1: they fail instead).
services:
	@{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1; } || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null; } || \
		echo "note: no Postgres or Redis (apt-get install postgresql redis-server); the shared-state tests will be skipped"

# The service tests check the systemd unit with Debian's systemd-analyze (package systemd); as root with
# apt-get it is installed, else those checks skip (CI sets PINAIVU_REQUIRE_SYSTEMD=1: they fail instead).
systemd:
	@command -v systemd-analyze >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; } || \
		echo "note: no systemd-analyze (apt-get install systemd); the service unit's checks will be skipped"

# The openai Node SDK for tests/compat/ (the version tests/compat/node/package-lock.json pins), from npm;
# as root with apt-get, Debian's nodejs and npm are installed first where they are missing.
node:
	@command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || \
		echo "note: no node or npm (apt-get install nodejs npm); the Node SDK's test will be skipped"
	@! command -v npm >/dev/null 2>&1 || npm ci --prefix tests/compat/node --no-audit --no-fund --silent

test: install-dev install-bench browser services systemd node
	$(BIN)/python -m pytest

# The edit-test loop: the unit tier only (no server processes, databases, browser or single file; about
# a minute here). `make test` runs everything, and CI runs `make test`.
test-fast: install-dev
	$(BIN)/python -m pytest -m unit $(ARGS)

# Ours against llama.cpp's llama-server and llama_cpp.server: a generated Llama-3.2-1B-shaped Q4_K_M model
# (generated once, a few minutes), the tiny F16 model, 8 chats sharing a 1,000-token system prompt, and
# embeddings/s for 64-input requests against llama-server --embeddings on the same GGUF.
# LLAMA_SERVER=path/to/llama-server (default: build/llama-server/bin/llama-server where it was built, see
# docs/performance.md); `make bench ARGS="--rounds 5"` passes options through.
LLAMA_SERVER ?= $(wildcard build/llama-server/bin/llama-server)
bench: install-bench
	$(BIN)/pinaivu-local bench $(if $(LLAMA_SERVER),--llama-server "$(LLAMA_SERVER)") $(ARGS)
	$(BIN)/pinaivu-local bench --gateway 500
	$(BIN)/pinaivu-local bench --embeddings 20 $(if $(LLAMA_SERVER),--llama-server "$(LLAMA_SERVER)")
	$(BIN)/python -m pinaivu_local.bench.constrained

# One executable file carrying Python, this package, llama.cpp and the web pages (PyInstaller, a few minutes):
# dist/pinaivu-local-<version>-<os>-<arch>-<cpu|cuda|metal>. GPU= as for `make install`.
dist: $(VENV)/.installed-dist
	$(BIN)/python packaging/build.py --backend $(GPU)

lint: install-dev
	$(BIN)/ruff check pinaivu_local tests packaging
	$(BIN)/ruff format --check pinaivu_local tests packaging
	$(BIN)/mypy

# Refresh constraints.txt: the newest release of every dependency (all extras) that pyproject.toml allows,
# resolved in a scratch virtualenv. Review the diff, run `make test`, commit it.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet '.[dev,bench,dist]'
	{ sed -n '1,2p' constraints.txt; .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^pinaivu-local'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
