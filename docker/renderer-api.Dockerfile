# syntax=docker/dockerfile:1
# The renderer API (`omost-renderer api`): job submission, progress events and result images. It
# never runs the diffusion pipeline (the GPU workers do), so a CPU build of torch is enough.
# Build from the repository root: docker build -f docker/renderer-api.Dockerfile -t omost-renderer-api .
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
COPY services/renderer/ services/renderer/
RUN pip install ./shared "./services/renderer[s3]"

# An unprivileged user that owns the results folder, so a fresh named volume mounted there is
# writable (Docker copies the ownership of the image's folder into an empty volume).
RUN useradd --create-home --uid 10001 omost \
    && mkdir -p /data/results /models \
    && chown -R omost:omost /data /models
USER 10001
VOLUME ["/data/results"]

EXPOSE 8001
CMD ["omost-renderer", "api", "--host", "0.0.0.0", "--port", "8001"]
