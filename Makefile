# abflow: two commands do all the set-up — `make demo` and `make test`.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .abflow/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_COMPILE_BYTECODE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: demo test test-suite check-dist test-lowest dist install install-dev lint typecheck bench \
	bench-engines bench-web screenshots web clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode --extra web
	touch $@

# Every extra: the suite imports each one (tests/unit/test_extras.py) and runs DuckDB and Spark.
$(VENV)/.installed-dev: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode --all-extras
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/abflow demo

# The whole suite, then the wheel as users install it and the lowest declared versions.
test: test-suite check-dist test-lowest

test-suite: install-dev
	$(VENV)/bin/pytest -n 2

# dist/abflow-<version>-py3-none-any.whl and dist/abflow-<version>.tar.gz
dist: $(UV)
	rm -rf dist
	$(UV) build --out-dir dist

# Build, pip install into fresh venvs (one with an older Prefect), pip check, --version, demo.
check-dist: install-dev
	.ci/dist-check

# uv sync --resolution lowest-direct in a temporary copy: unit tests and one flow run.
test-lowest: install-dev
	.ci/lowest-direct

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install-dev
	$(VENV)/bin/python -m benchmarks.run --sizes 1000000 --set enable_indexscan=off

# The dashboard on the demo's data: `make demo` first, then a token (`abflow token create …`).
web: install
	$(VENV)/bin/abflow web

# Browser tests writing their screenshots into docs/screenshots (needs Debian's chromium).
screenshots: install-dev
	ABFLOW_WEB_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest tests/web/test_browser.py -q

# Latency of the web app with 200 experiments and 10,000 runs (needs wrk; benchmarks/README.md).
bench-web: install-dev
	$(VENV)/bin/python -m benchmarks.web

bench-engines: install-dev
	$(VENV)/bin/python -m benchmarks.engines --sizes 1000000 --repeat 3 --e2e

clean:
	rm -rf $(VENV) $(TOOLS) .abflow/pgdata dist
