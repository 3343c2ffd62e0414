# syntax=docker/dockerfile:1
# The LLM service (`omost-llm`): an OpenAI-compatible canvas composer. In the compose file and the
# Kubernetes manifests it talks to a vLLM server, so it needs no GPU and gets a CPU build of torch
# (the `transformers` backend still works in it, slowly, for a box without vLLM).
# Build from the repository root: docker build -f docker/llm.Dockerfile -t omost-llm .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# The CPU wheel index keeps the image small; point it elsewhere to get another torch build.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/huggingface

# torch first and on its own, so the packages below resolve against it instead of pulling a
# CUDA build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
COPY shared/ shared/
COPY services/llm/ services/llm/
RUN pip install ./shared ./services/llm

# An unprivileged user that owns the model cache, so a fresh named volume mounted there is
# writable (Docker copies the ownership of the image's folder into an empty volume).
RUN useradd --create-home --uid 10001 omost \
    && mkdir -p /models \
    && chown omost:omost /models
USER 10001
VOLUME ["/models"]

EXPOSE 8000
CMD ["omost-llm", "serve", "--host", "0.0.0.0", "--port", "8000"]
