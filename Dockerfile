# bpnet for GPU workstations: TensorFlow's official GPU image + bpnet with the TensorRT extra.
#   docker build -t bpnet .
#   docker run --gpus all -it -v $PWD/data:/opt/bpnet/data -v $PWD/results:/opt/bpnet/results bpnet \
#       dataset_convert -m train -o data/train -r results/ --generate_masks -d data_pose_config/coco_spec.json
FROM tensorflow/tensorflow:2.17.0-gpu

# The `trt` extra installs TensorRT and cuda-python from wheels (bpnet export --target tensorrt and
# the Predictor's TensorRT backend); the GPU driver comes from the host (--gpus all).
WORKDIR /opt/bpnet
COPY pyproject.toml README.md ./
COPY bpnet ./bpnet
RUN pip install --no-cache-dir ".[trt]" \
    && ln -s bpnet/resources/specs specs \
    && ln -s bpnet/resources/data_pose_config data_pose_config \
    && ln -s bpnet/resources/model_pose_config model_pose_config

# The shipped specs name ../data and ../results relative to their folders: mount those two here.
ENTRYPOINT ["bpnet"]
CMD ["--help"]
