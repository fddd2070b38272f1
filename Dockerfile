# GPU image: CUDA 12 runtime, Python 3.11, the project with the cuda12 and all extras.
#   docker build -t dreamerv3 .
#   docker run --gpus all -v ~/logdir:/logdir dreamerv3 --configs atari --logdir /logdir/pong
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MUJOCO_GL=egl
RUN apt-get update && apt-get install -y --no-install-recommends \
      software-properties-common curl git ffmpeg libgl1 libegl1 libegl-mesa0 libosmesa6 \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH

WORKDIR /app
COPY pyproject.toml README.md ./
COPY configs configs
COPY dreamerv3 dreamerv3
COPY embodied embodied
RUN pip install --upgrade pip && pip install '.[cuda12,all]'

ENTRYPOINT ["python", "-m", "dreamerv3.main"]
