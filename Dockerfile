# GPU image: Python 3.11, the project with the cuda12 and all extras.
#   docker build -t dreamerv3 .
#   docker run --gpus all -v ~/logdir:/logdir dreamerv3 --configs atari --logdir /logdir/pong
#
# No CUDA base image: jax[cuda12] installs its own CUDA and cuDNN wheels, so a CUDA/cuDNN image
# would ship them twice (and JAX could pick up the image's older cuDNN). The host only needs the
# NVIDIA driver and the container toolkit (--gpus all). No ffmpeg either: videos are encoded
# through PyAV, which bundles its own. (Only TensorBoard GIF summaries call an ffmpeg binary;
# add it with apt-get when using that output.) GLIBC_TUNABLES gives XLA:CPU's per-call
# temporaries transparent huge pages when the agent runs on the CPU; it changes nothing on a GPU.
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=egl \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics

# MuJoCo (dm_control) renders through EGL: libglvnd's loader, which the container toolkit points
# at the driver's EGL library via the vendor file below; Mesa (EGL and OSMesa) is the software
# fallback on machines without a GPU.
RUN apt-get update && apt-get install -y --no-install-recommends \
      libglvnd0 libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/share/glvnd/egl_vendor.d \
    && printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_nvidia.so.0"}}\n' \
      > /usr/share/glvnd/egl_vendor.d/10_nvidia.json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY configs configs
COPY dreamerv3 dreamerv3
COPY embodied embodied
RUN pip install --upgrade pip && pip install '.[cuda12,all]'

ENTRYPOINT ["python", "-m", "dreamerv3.main"]
