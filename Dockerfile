# DexLite project image: the `dexlite` CLI, Prefect (server / worker), Dask (scheduler / workers).
#   docker build -t dexlite .                                   (CPU torch)
#   docker build -t dexlite --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .   (CUDA)
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=disable \
    PREFECT_HOME=/data/prefect-home \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_LOGGING_EXTRA_LOGGERS=dexlite

# libgomp: torch / coacd threads; libgl1 + libglib2.0: trimesh / matplotlib imports; curl: debugging
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY pyproject.toml README.md ./
COPY dexlite_core ./dexlite_core
COPY storage ./storage
COPY tasks ./tasks
COPY flows ./flows
COPY configs ./configs
RUN pip install -e . && dexlite stages

# Shared artifact store, run folders and Prefect result records (a volume in docker-compose.yml)
VOLUME ["/data"]
CMD ["dexlite", "--help"]
