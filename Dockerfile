# bpnet for GPU workstations: TensorFlow's official GPU image + bpnet with the TensorRT extra.
#   docker build -t bpnet .
#   docker run --gpus all -it -v $PWD/data:/workspace/data bpnet dataset_convert -d ... -o ...
FROM tensorflow/tensorflow:2.17.0-gpu

# The `trt` extra installs TensorRT and cuda-python from wheels (bpnet export --target tensorrt and
# the Predictor's TensorRT backend); the GPU driver comes from the host (--gpus all).
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
