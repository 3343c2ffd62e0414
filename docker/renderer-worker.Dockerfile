# syntax=docker/dockerfile:1
# The renderer worker (`omost-renderer worker`): loads the SDXL pipeline once, then takes jobs from
# the Redis stream and renders them on its GPU. The CUDA base image sets up the NVIDIA container
# runtime's environment; torch brings its own CUDA libraries (PyPI's default Linux build), so pick
# a base whose CUDA major version the hosts' driver supports.
# Build from the repository root:
#   docker build -f docker/renderer-worker.Dockerfile -t omost-renderer-worker .
ARG CUDA_IMAGE=nvidia/cuda:12.9.1-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.13.0
# Empty: PyPI's default torch build (CUDA on Linux x86_64). Set a wheel index URL to pick another.
ARG TORCH_INDEX_URL=""

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    HF_HOME=/models/huggingface \
    PATH=/opt/venv/bin:$PATH

# Ubuntu's Python in a virtual environment of its own (the system one is externally managed).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# torch first and on its own, so the packages below resolve against it.
RUN pip install "torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"}

WORKDIR /app
COPY shared/ shared/
COPY services/renderer/ services/renderer/
RUN pip install ./shared "./services/renderer[s3]"

# An unprivileged user that owns the model cache and the results folder, so fresh named volumes
# mounted there are writable (Docker copies the ownership of the image's folder into an empty
# volume). Ubuntu's images already hold a user 1000, hence 10001.
RUN useradd --create-home --uid 10001 omost \
    && mkdir -p /data/results /models \
    && chown -R omost:omost /data /models
USER 10001
VOLUME ["/models", "/data/results"]

# Healthy while the worker's heartbeat key in Redis is fresh.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
    CMD ["omost-renderer", "worker", "--check"]
CMD ["omost-renderer", "worker"]
