# Two commands do everything on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

NATIVE := lumu_cli/native

.PHONY: install native cargo demo test lint browser bench broker clean mutate fuzz

install: $(VENV)/.installed $(VENV)/.native

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The record checks in native code (Rust, PyO3), built with maturin into the venv. lumu runs
# without them too (every record is then checked in Python, and track and serve say so).
$(VENV)/.native: $(VENV)/.installed $(NATIVE)/Cargo.toml $(NATIVE)/Cargo.lock $(NATIVE)/pyproject.toml $(wildcard $(NATIVE)/src/*.rs)
	$(MAKE) --no-print-directory native
	touch $@

native: cargo
	@# cargo before 1.68 (Debian 12's is 1.65) reads crates.io's sparse index only as an
	@# unstable feature; the lock file keeps every crate at a version its Rust 1.63 builds
	@if cargo version | awk '{ split($$2, v, "."); exit !(v[1] == 1 && v[2] < 68) }'; then \
	  export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_SPARSE_REGISTRY=true; fi; \
	$(BIN)/pip install --quiet ./$(NATIVE)

cargo:  # the native checker is built with cargo: Debian's is installed with apt-get when missing
	@command -v cargo >/dev/null || { \
	  echo "make: installing Debian's cargo (Rust) to build the native checker"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends cargo >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends cargo >/dev/null; }; }

demo: install
	scripts/demo

broker:  # the local Kafka the demo uses (stop it with scripts/kafka-broker stop)
	scripts/kafka-broker start

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint browser
	$(BIN)/pytest

browser:  # the browser test drives Debian's chromium: installed with apt-get when missing
	@command -v chromium >/dev/null || { \
	  echo "make: installing Debian's chromium for tests/integration/test_page.py"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }

bench: install  # twelve scripts, about 15-22 minutes; the Kafka ones start their own broker on 127.0.0.1:29192, cluster.py a 3-node cluster on 29600
	$(BIN)/python bench/ts_parse.py
	$(BIN)/python bench/ts_forms.py
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/consume.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/produce.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/http_serve.py
	$(BIN)/python bench/http_load.py
	$(BIN)/python bench/state.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/windows.py

mutate: install  # mutation check of the state code, by unit tests only; MODULE=events runs one module
	$(BIN)/mutmut run --max-children 2 $(if $(MODULE),'lumu_cli.$(MODULE).*')
	$(BIN)/mutmut results

fuzz: install  # the native checker fed random and mutated records by atheris, for FUZZ_SECONDS (60)
	$(BIN)/python tests/fuzz_native.py -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=4096

clean:
	rm -rf $(VENV) $(NATIVE)/target bench/.data .pytest_cache .mypy_cache .ruff_cache .hypothesis
