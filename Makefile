# Kairos — `make run` to try it, `make test` to test it. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_OK  := $(VENV)/.installed
JS_OK  := client-js/node_modules/.installed
SNIPPET := client-js/dist/k.js
EDITOR_JS_OK := dashboard-js/node_modules/.installed
EDITOR  := server/kairos/static/dashboard/editor.js
# The demo's rules live in the state directory (git-ignored), not in examples/:
# Apply in the dashboard's editor writes the rules file, and it must not rewrite
# a file of the repository.
DEMO_RULES := .kairos/rules.yaml
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test build install system-deps bench bench-cluster bench-load bench-dashboard bench-timers bench-snippet bench-intent bench-old-session clean

run: $(PY_OK) $(SNIPPET) $(EDITOR) $(DEMO_RULES)
	@echo "The demo's rules: $(DEMO_RULES), made from examples/demo.yaml on the first run (delete it to start again from the example)."
	$(BIN)/kairos serve --engine memory --rules $(DEMO_RULES) --host $(HOST) --port $(PORT)

# Made once from examples/demo.yaml; after that it is the operator's (edited from
# the dashboard, perhaps) and never overwritten. Delete it to start again.
$(DEMO_RULES): | examples/demo.yaml
	@mkdir -p $(@D)
	cp examples/demo.yaml $@

test: $(PY_OK) $(SNIPPET) $(EDITOR) system-deps
	cd client-js && npm --silent test
	$(BIN)/python -m pytest

build: $(SNIPPET) $(EDITOR)

install: $(PY_OK) $(JS_OK) $(EDITOR_JS_OK)

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
	cd client-js && npm --silent run build

# The dashboard's rules editor (CodeMirror 6), bundled by esbuild; built like the snippet.
$(EDITOR_JS_OK): dashboard-js/package.json dashboard-js/package-lock.json
	@scripts/system-deps node
	cd dashboard-js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(EDITOR): $(EDITOR_JS_OK) dashboard-js/build.mjs $(wildcard dashboard-js/src/*.js)
	cd dashboard-js && npm --silent run build

# Chromium (browser tests) and redis-server (started by the tests when no Redis
# answers) from Debian's packages, when absent.
system-deps:
	@scripts/system-deps

# Kairos next to the bare server on its stack (benchmarks/floor.py), same load, interleaved runs.
bench: $(PY_OK) $(SNIPPET) system-deps
	$(BIN)/python benchmarks/compare.py

# The same on a Redis Cluster of its own (3 masters, a replica each; tests/redis_cluster.py): Redis CPU per shard too.
bench-cluster: $(PY_OK) $(SNIPPET) system-deps
	$(BIN)/python benchmarks/compare.py --cluster

bench-load: $(PY_OK) $(SNIPPET) system-deps
	$(BIN)/python benchmarks/load.py --engine redis --sessions 1000

bench-dashboard: $(PY_OK) $(SNIPPET) system-deps
	$(BIN)/python benchmarks/load.py --engine redis --sessions 1000 --dashboard

bench-timers: $(PY_OK) system-deps
	$(BIN)/python benchmarks/timers.py --engine redis

bench-snippet: $(PY_OK) $(SNIPPET) system-deps
	$(BIN)/python benchmarks/snippet.py

bench-intent: $(PY_OK)
	$(BIN)/python benchmarks/intent.py

bench-old-session: $(PY_OK) system-deps
	$(BIN)/python benchmarks/old_session.py

clean:
	rm -rf $(VENV) client-js/node_modules client-js/dist dashboard-js/node_modules $(EDITOR) .pytest_cache
