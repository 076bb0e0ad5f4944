# Kairos — `make run` to try it, `make test` to test it. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_OK  := $(VENV)/.installed
JS_OK  := client-js/node_modules/.installed
SNIPPET := client-js/dist/k.js
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test build install system-deps bench bench-dashboard bench-timers bench-snippet bench-intent clean

run: $(PY_OK) $(SNIPPET)
	$(BIN)/kairos serve --engine memory --rules examples/demo.yaml --host $(HOST) --port $(PORT)

test: $(PY_OK) $(SNIPPET) system-deps
	cd client-js && npm test
	$(BIN)/python -m pytest

build: $(SNIPPET)

install: $(PY_OK) $(JS_OK)

$(PY_OK): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Kairos needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,train]'
	touch $@

$(JS_OK): client-js/package.json client-js/package-lock.json
	@scripts/system-deps node
	cd client-js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(SNIPPET): $(JS_OK) client-js/build.mjs $(wildcard client-js/src/*.js)
	cd client-js && npm run build

# Chromium (browser tests) and redis-server (started by the tests when no Redis
# answers) from Debian's packages, when absent.
system-deps:
	@scripts/system-deps

bench: $(PY_OK) $(SNIPPET) system-deps
	$(BIN)/python benchmarks/load.py --engine redis --sessions 1000

bench-dashboard: $(PY_OK) $(SNIPPET) system-deps
	$(BIN)/python benchmarks/load.py --engine redis --sessions 1000 --dashboard

bench-timers: $(PY_OK) system-deps
	$(BIN)/python benchmarks/timers.py --engine redis

bench-snippet: $(PY_OK) $(SNIPPET) system-deps
	$(BIN)/python benchmarks/snippet.py

bench-intent: $(PY_OK)
	$(BIN)/python benchmarks/intent.py

clean:
	rm -rf $(VENV) client-js/node_modules client-js/dist .pytest_cache
