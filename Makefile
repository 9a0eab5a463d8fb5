# Two commands do everything on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint browser bench broker clean mutate

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

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

bench: install  # twelve scripts, about 22 minutes; the Kafka ones start their own broker on 127.0.0.1:29192, cluster.py a 3-node cluster on 29600
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

clean:
	rm -rf $(VENV) bench/.data .pytest_cache .mypy_cache .ruff_cache .hypothesis
