# Every target bootstraps what it needs: a project-local venv (.venv) with the pinned
# stack, and a project-local Airflow home (.airflow) with a migrated SQLite metadata DB.
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
PYTHON ?= python3
STAMP := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export AIRFLOW_HOME ?= $(ROOT)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(ROOT)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(ROOT)/plugins
export AIRFLOW__CORE__PARALLELISM ?= 4
export WEBSCALE_RL_DATA_DIR ?= $(ROOT)/data

LLM_POOL_SLOTS ?= 4
DEMO_CONF ?= {"corpus": "sample", "run_label": "make demo"}

.PHONY: bootstrap airflow-db demo test up bench train-smoke clean

bootstrap: $(STAMP)

$(STAMP): requirements.txt requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

airflow-db: $(AIRFLOW_HOME)/.migrated

$(AIRFLOW_HOME)/.migrated: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -30 $(AIRFLOW_HOME)/migrate.log; exit 1)
	$(BIN)/airflow pools set llm $(LLM_POOL_SLOTS) "LLM shard tasks: caps concurrent shards per server" >> $(AIRFLOW_HOME)/migrate.log 2>&1
	touch $@

## make demo: run the webscale_rl DAG under real Airflow on the bundled sample corpus.
## LLM_URL=http://host:8000/v1 MODEL=name uses your OpenAI-compatible server instead of the
## scripted test server (see scripts/run_demo.py).
demo: airflow-db
	$(BIN)/python scripts/run_demo.py $(if $(LLM_URL),--llm-url $(LLM_URL)) $(if $(MODEL),--model $(MODEL)) \
	  --conf '$(DEMO_CONF)'

## make test: the whole test suite (unit, DAG integrity, end-to-end under dag.test()).
test: airflow-db
	$(BIN)/python -m pytest -q

## make up: Airflow UI on http://localhost:8080 (airflow standalone; Ctrl-C stops it).
up: airflow-db
	$(BIN)/airflow standalone

## make bench: every benchmark in bench/ (figures printed, nothing asserted).
bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

train-smoke:
	@echo "make train-smoke: not built yet (training lands with issue 6)"; exit 1

clean:
	rm -rf $(AIRFLOW_HOME) .pytest_cache
