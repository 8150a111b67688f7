# bpnet for GPU workstations: TensorFlow's official GPU image + bpnet with the TensorRT extra.
#   docker build -t bpnet .
#   docker run --gpus all -it -v $PWD/data:/workspace/data bpnet dataset_convert -d ... -o ...
FROM tensorflow/tensorflow:2.17.0-gpu

# pycuda (from the `trt` extra) compiles against the CUDA headers; the base image is built on
# NVIDIA's CUDA 12.3 image, whose apt repository provides them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential python3-dev cuda-nvcc-12-3 cuda-cudart-dev-12-3 \
    && rm -rf /var/lib/apt/lists/*
ENV CUDA_ROOT=/usr/local/cuda PATH=/usr/local/cuda/bin:${PATH}

WORKDIR /opt/bpnet
COPY pyproject.toml README.md ./
COPY bpnet ./bpnet
COPY specs ./specs
COPY data_pose_config ./data_pose_config
COPY model_pose_config ./model_pose_config
RUN pip install --no-cache-dir ".[trt]"

WORKDIR /workspace
ENTRYPOINT ["bpnet"]
CMD ["--help"]
