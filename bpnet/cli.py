"""The ``bpnet`` command surface: a click group whose subcommands each call one library function.

Subcommand names and flags follow TLT bpnet. Logging is configured by the group and by ``-ll`` and nowhere else
(:mod:`bpnet.cli_support`, which also turns every expected failure — bad input, a file-system error such as a full
disk or a read-only folder, memory — into one ``Error: ...`` line on stderr and exit code 2; with ``-ll DEBUG``
the traceback is shown as well; anything else is a bug and keeps its traceback). Shared option groups are in
:mod:`bpnet.cli_options`.
"""

import logging
import os
import signal
from typing import Optional, Tuple

import click

from bpnet import __version__, launcher, registry
from bpnet.cli_options import key_option, launcher_options, log_level_option, predictor_options, set_option
from bpnet.cli_support import LOG_LEVELS, BpnetGroup, configure_logging, uses_tensorflow
from bpnet.errors import BpnetError
from bpnet.export.pipeline import DEFAULT_CAL_CACHE_FILE, ExportRequest  # the flags' defaults have one owner
from bpnet.images import MAX_NETWORK_INPUT_SIDE, check_network_input_shape
from bpnet.infer.track import TrackerSettings
from bpnet.registry import resolve_model
from bpnet.status import raise_terminated


@click.group(cls=BpnetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bpnet")
@click.option(
    "-ll",
    "--log_level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Logging level.",
)
def cli(log_level: str) -> None:
    """bpnet: bottom-up multi-person 2D pose estimation (TLT BodyPoseNet workflow on TF2/Keras 3)."""
    configure_logging(log_level.upper())


@cli.command("dataset_convert")
@click.option(
    "-d",
    "--dataset_spec",
    required=True,
    type=click.Path(dir_okay=False),
    help="Dataset spec (.json or .yaml), e.g. data_pose_config/coco_spec.json.",
)
@click.option(
    "-o",
    "--output_filename",
    required=True,
    type=click.Path(),
    help="Output TFRecord path prefix, e.g. data/train -> data/train-fold-000-of-001.",
)
@click.option(
    "-m",
    "--mode",
    default="train",
    show_default=True,
    type=click.Choice(["train", "test"], case_sensitive=False),
    help="train converts train_data; test converts test_data.",
)
@click.option("-p", "--num_partitions", default=1, show_default=True, type=int, help="Number of folds.")
@click.option(
    "-s", "--num_shards", default=0, show_default=True, type=int, help="Shards per fold (0: one file per fold, no shard suffix)."
)
@click.option("--generate_masks", is_flag=True, help="Write the loss masks (needed for training).")
@click.option("--check_files", is_flag=True, help="Check every image (and mask) exists and decodes.")
@click.option(
    "-r",
    "--results_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for status.json (default: the output folder).",
)
@click.option(
    "--workers", default=None, type=click.IntRange(min=1), help="Worker processes for masks and file checks  [default: all cores]"
)
@set_option
@log_level_option
@uses_tensorflow
@launcher_options
def dataset_convert(
    dataset_spec: str,
    output_filename: str,
    mode: str,
    num_partitions: int,
    num_shards: int,
    generate_masks: bool,
    check_files: bool,
    results_dir: Optional[str],
    workers: Optional[int],
    overrides: Tuple[str, ...],
) -> None:
    """Convert a COCO-format keypoint dataset into TFRecords and loss masks."""
    from bpnet.data.convert import convert_dataset

    summary = convert_dataset(
        dataset_spec,
        output_filename,
        mode=mode.lower(),
        num_partitions=num_partitions,
        num_shards=num_shards,
        generate_masks=generate_masks,
        check_files=check_files,
        results_dir=results_dir,
        workers=workers,
        overrides=overrides,
    )
    click.echo(f"dataset_convert: {summary.line()}")
    for path in summary.output_files:
        click.echo(f"  {path}")


@cli.command("dataset_inspect")
@click.option(
    "-e",
    "--experiment_spec_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Train spec whose records, augmentation and targets to show.",
)
@click.option(
    "-n", "--num_samples", default=8, show_default=True, type=click.IntRange(min=1), help="Number of augmented samples to write."
)
@click.option("-o", "--output_dir", required=True, type=click.Path(file_okay=False), help="Folder for the PNGs.")
@click.option("--seed", default=None, type=int, help="Random seed  [default: the spec's random_seed]")
@set_option
@log_level_option
@uses_tensorflow
def dataset_inspect(
    experiment_spec_file: str, num_samples: int, output_dir: str, seed: Optional[int], overrides: Tuple[str, ...]
) -> None:
    """Render augmented training samples with their keypoints, targets and loss mask (bpnet addition)."""
    from bpnet.data.inspect import inspect_dataset

    written = inspect_dataset(experiment_spec_file, num_samples, output_dir, seed=seed, overrides=overrides)
    click.echo(f"dataset_inspect: wrote {len(written)} samples to {os.path.abspath(output_dir)}")


@cli.command("train")
@click.option("-e", "--experiment_spec_file", required=True, type=click.Path(dir_okay=False), help="Train spec (YAML).")
@click.option(
    "-r",
    "--results_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Results folder (overrides the spec's checkpoint_dir). Rerun to resume.",
)
@key_option
@click.option(
    "--gpus",
    default=None,
    type=click.IntRange(min=1),
    help="GPUs to train on (MirroredStrategy when several); --gpus 1 without a GPU trains on the CPU  "
    "[default: every visible GPU, else the CPU]",
)
@click.option("--use_amp", is_flag=True, help="Mixed precision (float16 compute, float32 weights).")
@click.option(
    "--logical_cpus",
    default=0,
    type=click.IntRange(min=0),
    help="Split the CPU into N devices under MirroredStrategy (testing the distributed path).",
)
@click.option("--deterministic", is_flag=True, help="TensorFlow op determinism (bit-exact reruns; slower on GPU).")
@set_option
@log_level_option
@uses_tensorflow
@launcher_options
def train(
    experiment_spec_file: str,
    results_dir: Optional[str],
    key: str,
    gpus: Optional[int],
    use_amp: bool,
    logical_cpus: int,
    deterministic: bool,
    overrides: Tuple[str, ...],
) -> None:
    """Train a model; rerunning the same command resumes from the last checkpoint."""
    from bpnet.train.trainer import train as run_training

    meta = click.get_current_context().meta
    result = run_training(
        experiment_spec_file,
        results_dir,
        gpus=launcher.training_gpus(gpus, meta.get("bpnet.num_processes", -1), meta.get("bpnet.gpu_index", ())),
        use_amp=use_amp,
        logical_cpus=logical_cpus,
        deterministic=deterministic,
        overrides=overrides,
    )
    if result.nothing_to_do:
        click.echo(
            f"train: already trained to epoch {result.epochs}; nothing to do (raise num_epoch, e.g. "
            f"--set num_epoch={result.epochs + 5}, to train further); final model {result.final_model}"
        )
        return
    click.echo(f"train: {result.epochs} epochs, {result.steps} steps; final model {result.final_model}")


@cli.command("evaluate")
@predictor_options
@click.option("--dataset", default="coco", type=click.Choice(["coco"]), show_default=True, help="Dataset format.")
@click.option(
    "-d",
    "--dataset_spec",
    default=None,
    type=click.Path(dir_okay=False),
    help="Dataset spec; its test_data is evaluated (or give --annotations and --images).",
)
@click.option(
    "--annotations",
    default=None,
    type=click.Path(dir_okay=False),
    help="COCO keypoint annotation file (person_keypoints_val2017.json), in place of -d (bpnet addition).",
)
@click.option(
    "--images", default=None, type=click.Path(file_okay=False), help="The annotated images' folder (with --annotations)."
)
@key_option
@click.option("--results_dir", default="results/evaluate", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--no_report", is_flag=True, help="Skip the report folder (report/index.html: AP per image, the worst images drawn)."
)
@set_option
@log_level_option
@uses_tensorflow
@launcher_options
def evaluate(
    inference_spec: Optional[str],
    model_filename: Optional[str],
    dataset: str,
    dataset_spec: Optional[str],
    annotations: Optional[str],
    images: Optional[str],
    key: str,
    results_dir: str,
    no_report: bool,
    overrides: Tuple[str, ...],
) -> None:
    """COCO keypoint AP of a model on annotated images (pycocotools): --annotations FILE --images DIR, or the
    dataset spec's test_data."""
    from bpnet.infer.evaluate import annotations_dataset
    from bpnet.infer.evaluate import evaluate as run_evaluation

    if (dataset_spec is None) == (annotations is None) or (annotations is None) != (images is None):
        raise BpnetError("evaluate: give --annotations FILE and --images DIR, or -d/--dataset_spec")
    data = dataset_spec if dataset_spec is not None else annotations_dataset(str(annotations), str(images))
    model_path = resolve_model(model_filename)
    stats = run_evaluation(inference_spec, data, results_dir, model_path=model_path, overrides=overrides, report=not no_report)
    for name, value in stats.items():
        click.echo(f"{name:<22} {value:.4f}")
    report = "" if no_report else f"; report {os.path.join(os.path.abspath(results_dir), 'report', 'index.html')}"
    click.echo(f"evaluate: results in {os.path.abspath(results_dir)}{report}")


@cli.command("inference")
@predictor_options
@click.option(
    "--input_type",
    default=None,
    type=click.Choice(["image", "dir", "json", "video"]),
    help="video: a video file or a camera index (bpnet addition)  [default: detected from --input before the model "
    "loads: a folder is dir, a .json file json, a video file or camera index video, else image]",
)
@click.option(
    "--input",
    "source",
    required=True,
    multiple=True,
    help="Image, folder, JSON list, video file or camera index; repeat for several, or quote a glob ('photos/*.jpg').",
)
@click.option("--image_root_path", default="", help="Prefix joined to image paths (image and json inputs).")
@click.option(
    "--min_person_score",
    default=None,
    type=click.FloatRange(min=0.0),
    help="Drop people scoring below this from detections.json and the renderings (bpnet addition; the inference "
    "spec's min_person_score)  [default: the spec's, 0]",
)
@key_option
@click.option("--results_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--dump_visualizations", is_flag=True, help="Render skeletons to images_annotated/ (a video for video input).")
@click.option(
    "--numbered_outputs",
    is_flag=True,
    help="Name renderings 0.png, 1.png... in input order, as TLT did  [default: the input's own name]",
)
@click.option(
    "--max_frames", default=None, type=click.IntRange(min=1), help="Video input: stop after this many frames (bpnet addition)."
)
@click.option(
    "--stride_frames",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Video input: process every K-th frame; the rendered video plays at the frame rate / K (bpnet addition).",
)
@click.option(
    "--track",
    is_flag=True,
    help="Video input: persistent person ids across frames (track_ids in detections.json, drawn per id; bpnet addition).",
)
@click.option(
    "--track_max_gap",
    default=TrackerSettings.max_gap,
    show_default=True,
    type=click.IntRange(min=0),
    help="--track: processed frames a person may go unseen before their id is retired.",
)
@click.option(
    "--track_min_similarity",
    default=TrackerSettings.min_similarity,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="--track: keypoint similarity (OKS) below which a person never continues a track.",
)
@click.option(
    "--track_flow/--no_track_flow",
    default=True,
    show_default=True,
    help="--track: move the tracks by optical flow between frames.",
)
@click.option(
    "--pipeline",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "threads", "sequential"]),
    help="threads: overlap reading, the network and decoding in threads; sequential: one input at a time; "
    "auto: threads on machines with more than 2 cores. The results are the same (bpnet addition; docs/video.md).",
)
@set_option
@log_level_option
@uses_tensorflow
@launcher_options
def inference(
    inference_spec: Optional[str],
    model_filename: Optional[str],
    input_type: Optional[str],
    source: Tuple[str, ...],
    image_root_path: str,
    min_person_score: Optional[float],
    key: str,
    results_dir: str,
    dump_visualizations: bool,
    numbered_outputs: bool,
    max_frames: Optional[int],
    stride_frames: int,
    track: bool,
    track_max_gap: int,
    track_min_similarity: float,
    track_flow: bool,
    pipeline: str,
    overrides: Tuple[str, ...],
) -> None:
    """Detect people in images or a video; write detections.json and optional renderings."""
    from bpnet.infer.inference import inference as run_inference

    tracking = TrackerSettings(track_min_similarity, track_max_gap, track_flow) if track else None
    if min_person_score is not None:
        overrides = (*overrides, f"min_person_score={min_person_score}")

    summary = run_inference(
        inference_spec,
        input_type,
        source,
        results_dir,
        model_path=resolve_model(model_filename),
        image_root_path=image_root_path,
        dump_visualizations=dump_visualizations,
        numbered_outputs=numbered_outputs,
        max_frames=max_frames,
        stride_frames=stride_frames,
        overrides=overrides,
        tracking=tracking,
        pipelined={"auto": None, "threads": True, "sequential": False}[pipeline],
    )
    tracks = f", {summary['tracks']} tracks" if "tracks" in summary else ""
    click.echo(
        f"inference: {summary['inputs']} inputs, {summary['people']} people{tracks}, {summary['skipped']} skipped, "
        f"{summary['inputs_partial']} partial; "
        f"results in {os.path.abspath(results_dir)}"
    )


@cli.command("prune")
@click.option(
    "-m",
    "--model",
    required=True,
    type=click.Path(dir_okay=False),
    help="Model to prune (.keras/.h5/.hdf5), or a registered network's name (imported as .keras; bpnet models).",
)
@click.option(
    "-o",
    "--output_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Pruned model; .keras is appended without a .keras/.h5/.hdf5 suffix.",
)
@key_option
@click.option(
    "-n",
    "--normalizer",
    default="max",
    show_default=True,
    type=click.Choice(["max", "L2"]),
    help="Layer-wise normalisation of the filter norms.",
)
@click.option(
    "-eq",
    "--equalization_criterion",
    default="union",
    show_default=True,
    type=click.Choice(["union", "intersection", "arithmetic_mean", "geometric_mean"]),
    help="How filter norms of layers meeting in element-wise operations are merged.",
)
@click.option(
    "-pg",
    "--pruning_granularity",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Kept filter counts are rounded up to a multiple of this.",
)
@click.option(
    "-pth",
    "--pruning_threshold",
    default=0.1,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Filters whose normalised norm is at most this are removed.",
)
@click.option(
    "-nf", "--min_num_filters", default=16, show_default=True, type=click.IntRange(min=0), help="Filters kept per layer at least."
)
@click.option(
    "-el",
    "--excluded_layers",
    multiple=True,
    help="Layer not to prune (repeat, or give several after one -el); model outputs never are.",
)
@click.option(
    "--target_macs",
    default=None,
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    help="bpnet: prune to this fraction of the original's multiply-accumulates: every prunable layer keeps the same "
    "fraction of its filters, the largest that fits (not with -pth).",
)
@click.option(
    "--keep_stages",
    default=None,
    type=click.IntRange(min=1),
    help="bpnet: keep only the first N stages (the Nth stage's maps become the outputs) before pruning filters; "
    "--target_macs still counts against the whole original.",
)
@click.option(
    "--input_shape",
    nargs=2,
    type=click.IntRange(min=1, max=MAX_NETWORK_INPUT_SIDE),
    default=None,
    help="bpnet: H W at which MACs are counted [default: the model's own input size, else 368 368].",
)
@click.option(
    "--calibration_images",
    multiple=True,
    type=click.Path(exists=True),
    help="bpnet: images, folders or videos (repeat; 64 used) on which filters are ranked by activation spread, removed "
    "channels' means are folded into biases, and 1x1 convolutions are refitted to the original's outputs.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log each layer's kept filter count.")
@click.option("-r", "--results_dir", default=None, type=click.Path(file_okay=False), help="Where status.json goes.")
@log_level_option
@uses_tensorflow
@click.pass_context
@launcher_options
def prune(
    ctx: click.Context,
    model: str,
    output_file: str,
    key: str,
    normalizer: str,
    equalization_criterion: str,
    pruning_granularity: int,
    pruning_threshold: float,
    min_num_filters: int,
    excluded_layers: Tuple[str, ...],
    target_macs: Optional[float],
    keep_stages: Optional[int],
    input_shape: Optional[Tuple[int, int]],
    calibration_images: Tuple[str, ...],
    verbose: bool,
    results_dir: Optional[str],
) -> None:
    """Remove low-norm convolution filters; retrain the result with load_graph: True."""
    from bpnet.prune import PruneSettings, output_model_path, prune_file

    if target_macs is not None and ctx.get_parameter_source("pruning_threshold") == click.core.ParameterSource.COMMANDLINE:
        raise BpnetError("give -pth/--pruning_threshold or --target_macs, not both")
    if verbose:
        logging.getLogger("bpnet.prune").setLevel(logging.DEBUG)
    settings = PruneSettings(
        threshold=pruning_threshold,
        normalizer=normalizer,
        equalization_criterion=equalization_criterion,
        granularity=pruning_granularity,
        min_filters=min_num_filters,
        excluded_layers=excluded_layers,
        target_macs=target_macs,
        keep_stages=keep_stages,
    )
    output = output_model_path(output_file)
    cost_input_size = (input_shape[0], input_shape[1]) if input_shape else None
    result = prune_file(resolve_model(model, ".keras"), output, settings, results_dir, cost_input_size, calibration_images)
    click.echo(result.table())
    click.echo(f"prune: {result.line()}; saved {os.path.abspath(output)}")


@cli.command("export")
@click.option(
    "-m",
    "--model",
    required=True,
    type=click.Path(dir_okay=False),
    help="Model to export (.keras/.h5/.hdf5, an imported .onnx/.xml) or a registered network's name (bpnet models).",
)
@click.option(
    "-o",
    "--output_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="ONNX file (.onnx forced)  [default: the model's name with .onnx]",
)
@key_option
@click.option(
    "-e",
    "--experiment_spec",
    default=None,
    type=click.Path(dir_okay=False),
    help="Train spec; only needed for models without bpnet metadata (normalisation, skeleton).",
)
@click.option(
    "-t",
    "--backend",
    default="onnx",
    type=click.Choice(["onnx", "tfonnx", "uff"]),
    help="Accepted for TLT compatibility: onnx and tfonnx both write ONNX through tf2onnx; uff is obsolete.",
)
@click.option(
    "--target",
    default=None,
    type=click.Choice(["tensorrt", "onnxruntime", "openvino"]),
    help="What to build from the ONNX file (bpnet addition)  [default: tensorrt with --engine_file, else onnxruntime]",
)
@click.option("--data_type", default=ExportRequest.data_type, show_default=True, type=click.Choice(["fp32", "fp16", "int8"]))
@click.option("--engine_file", default=None, type=click.Path(dir_okay=False), help="Where the TensorRT engine is saved.")
@click.option(
    "-d",
    "--input_dims",
    default=None,
    help="H,W,C or C,H,W: the TensorRT profile and calibration size  [default: 256,256,3; an imported model's own size]",
)
@click.option(
    "-i",
    "--data_format",
    default=ExportRequest.data_format,
    show_default=True,
    type=click.Choice(["channels_last", "channels_first"]),
)
@click.option("--cal_image_dir", default=None, type=click.Path(file_okay=False), help="Calibration images (INT8).")
@click.option(
    "--cal_data_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Calibration tensors (.npy): written from --cal_image_dir if missing, else reused.",
)
@click.option(
    "--cal_cache_file",
    default=None,
    type=click.Path(dir_okay=False),
    help=f"TensorRT calibration cache: written, and reused if it exists  [default: {DEFAULT_CAL_CACHE_FILE}]",
)
@click.option(
    "--batches", default=ExportRequest.batches, show_default=True, type=click.IntRange(min=1), help="Calibration batches."
)
@click.option(
    "--batch_size",
    default=ExportRequest.batch_size,
    show_default=True,
    type=click.IntRange(min=1),
    help="Calibration batch size.",
)
@click.option("--max_batch_size", default=ExportRequest.max_batch_size, show_default=True, type=click.IntRange(min=1))
@click.option("--opt_batch_size", default=ExportRequest.opt_batch_size, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--static_batch_size", default=ExportRequest.static_batch_size, show_default=True, type=int, help="≤ 0: dynamic batch."
)
@click.option(
    "--max_workspace_size",
    default=ExportRequest.max_workspace_size,
    show_default=True,
    type=click.IntRange(min=1),
    help="TensorRT workspace in bytes.",
)
@click.option("-s", "--strict_type_constraints", is_flag=True, help="TensorRT obeys the precision constraints.")
@click.option(
    "--int8_keep_float",
    default=None,
    metavar="REGEX",
    help="INT8: nodes whose name this regular expression matches stay in float (bpnet addition)  "
    "[default: an imported model's recommendation]",
)
@click.option(
    "--min_int8_pose_ap",
    default=ExportRequest.min_int8_pose_ap,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="INT8: the least COCO AP of the INT8 model's people with FP32's as ground truth, on the calibration images; "
    "below it the INT8 model is removed and the export fails (bpnet addition).",
)
@click.option(
    "--val_spec",
    default=None,
    type=click.Path(dir_okay=False),
    help="INT8: a labelled dataset spec; the INT8 model's COCO AP on its test_data must stay within --max_ap_drop of "
    "FP32's (bpnet addition).",
)
@click.option(
    "--max_ap_drop",
    default=ExportRequest.max_ap_drop,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="INT8 with --val_spec: the most COCO AP the INT8 model may lose (bpnet addition).",
)
@click.option(
    "--int8_accuracy_control",
    is_flag=True,
    help="INT8 for --target openvino: starting from --int8_keep_float (or the imported model's recommendation), NNCF "
    "puts the layers that cost the most accuracy back in float until the pose AP against FP32's people on the "
    "calibration images reaches --min_int8_pose_ap (measured budgets: docs/export.md); the layers left in float are "
    "logged and recorded in the model (bpnet addition).",
)
@click.option("--force_ptq", is_flag=True, help="Accepted for TLT compatibility (post-training quantisation is what runs).")
@click.option("--sdk_compatible_model", is_flag=True, help="Add TLT's PAF upsampling for DeepStream (deployment only).")
@click.option("-u", "--upsample_ratio", default=ExportRequest.upsample_ratio, show_default=True, type=click.IntRange(min=1))
@click.option("-v", "--verbose", is_flag=True, help="DEBUG logging.")
@click.option("-r", "--results_dir", default=None, type=click.Path(file_okay=False), help="Where status.json goes.")
@set_option
@log_level_option
@uses_tensorflow
@launcher_options
def export(
    model: str,
    output_file: Optional[str],
    key: str,
    experiment_spec: Optional[str],
    backend: str,
    target: Optional[str],
    data_type: str,
    engine_file: Optional[str],
    input_dims: Optional[str],
    data_format: str,
    cal_image_dir: Optional[str],
    cal_data_file: Optional[str],
    cal_cache_file: Optional[str],
    batches: int,
    batch_size: int,
    max_batch_size: int,
    opt_batch_size: int,
    static_batch_size: int,
    max_workspace_size: int,
    strict_type_constraints: bool,
    int8_keep_float: Optional[str],
    min_int8_pose_ap: float,
    val_spec: Optional[str],
    max_ap_drop: float,
    int8_accuracy_control: bool,
    force_ptq: bool,
    sdk_compatible_model: bool,
    upsample_ratio: int,
    verbose: bool,
    results_dir: Optional[str],
    overrides: Tuple[str, ...],
) -> None:
    """Write ONNX; build a TensorRT engine (GPU) or an INT8 ONNX model (CPU)."""
    from bpnet.export.pipeline import export as run_export
    from bpnet.export.pipeline import summary_lines

    if backend == "uff":
        raise BpnetError("-t uff: UFF is obsolete (removed from TensorRT 10); bpnet exports ONNX (-t onnx)")
    if verbose:
        configure_logging("DEBUG")
    request = ExportRequest(
        model=resolve_model(model),
        output_file=output_file,
        experiment_spec=experiment_spec,
        data_type=data_type,
        target=target,
        engine_file=engine_file,
        input_dims=input_dims,
        data_format=data_format,
        cal_image_dir=cal_image_dir,
        cal_data_file=cal_data_file,
        cal_cache_file=cal_cache_file,
        batches=batches,
        batch_size=batch_size,
        max_batch_size=max_batch_size,
        opt_batch_size=opt_batch_size,
        static_batch_size=static_batch_size,
        max_workspace_size=max_workspace_size,
        strict_type_constraints=strict_type_constraints,
        sdk_compatible_model=sdk_compatible_model,
        upsample_ratio=upsample_ratio,
        results_dir=results_dir,
        spec_overrides=overrides,
        int8_keep_float=int8_keep_float,
        min_int8_pose_ap=min_int8_pose_ap,
        val_spec=val_spec,
        max_ap_drop=max_ap_drop,
        int8_accuracy_control=int8_accuracy_control,
    )
    result = run_export(request)
    for kind, path in summary_lines(result).items():
        click.echo(f"export: {kind:<18} {path}")
    if result.int8_agreement:
        click.echo(f"export: {'INT8 vs FP32':<18} {result.int8_agreement} (calibration images)")
    if result.int8_accuracy_control:
        kept = result.int8_accuracy_control["float_convolutions"]
        click.echo(f"export: {'INT8 in float':<18} {len(kept)} convolutions after accuracy control (names in int8_check)")


@cli.command("sample_calibration_images")
@click.option("-a", "--annotation_file", required=True, type=click.Path(dir_okay=False), help="COCO keypoint annotations.")
@click.option("-i", "--image_dir", required=True, type=click.Path(file_okay=False), help="The annotations' images.")
@click.option("-o", "--output_dir", required=True, type=click.Path(file_okay=False), help="Where the sample is copied.")
@click.option("-n", "--num_images", default=500, show_default=True, type=click.IntRange(min=1))
@click.option(
    "-pth",
    "--min_people",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Labeled, non-crowd people an image needs at least.",
)
@click.option("--randomize", is_flag=True, help="Shuffle before picking (else the first by image id).")
@click.option("--seed", default=0, show_default=True, type=int)
@log_level_option
def sample_calibration_images(
    annotation_file: str, image_dir: str, output_dir: str, num_images: int, min_people: int, randomize: bool, seed: int
) -> None:
    """Pick INT8 calibration images with people from a COCO annotation file (TLT notebook helper)."""
    from bpnet.export.calibration import sample_calibration_images as run_sampling

    chosen = run_sampling(annotation_file, image_dir, output_dir, num_images, min_people, randomize, seed)
    click.echo(f"sample_calibration_images: {len(chosen)} images copied to {os.path.abspath(output_dir)}")


@cli.command("synthesize")
@click.option("-o", "--output_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option(
    "--num_images", default=100, show_default=True, type=click.IntRange(min=1), help="Images (with --video: frames) to draw."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same files.")
@click.option(
    "--split",
    default=None,
    help="Writes <split>2017/ and annotations/person_keypoints_<split>2017.json (with --video: video_<split>.avi and "
    "annotations/person_keypoints_video_<split>.json)  [default: train; with --video: val]",
)
@click.option("--video", is_flag=True, help="A video of figures walking, with a track_id per person (tracking ground truth).")
@click.option("--num_people", default=4, show_default=True, type=click.IntRange(min=1), help="--video: walking figures.")
@click.option(
    "--crossings/--no_crossings",
    default=True,
    show_default=True,
    help="--video: pairs of figures cross each other (else each keeps a lane of its own and none is ever hidden).",
)
@log_level_option
def synthesize(
    output_dir: str, num_images: int, seed: int, split: Optional[str], video: bool, num_people: int, crossings: bool
) -> None:
    """Draw a COCO-format person-keypoint dataset of articulated figures, or a video of them walking (bpnet addition)."""
    from tqdm import tqdm

    split = split or ("val" if video else "train")
    if not split.replace("_", "").replace("-", "").isalnum():
        raise BpnetError(f"--split: {split!r} must be a plain name (letters, digits, - and _)")
    if video:
        from bpnet.synthesize_video import synthesize_video

        with tqdm(total=num_images, desc="synthesize", unit="frame") as bar:
            video_summary = synthesize_video(output_dir, num_images, seed, split, num_people, crossings, progress=bar.update)
        click.echo(f"synthesize: {video_summary.line()}")
        return
    from bpnet.synthesize import synthesize as run_synthesis

    with tqdm(total=num_images, desc="synthesize", unit="img") as bar:
        summary = run_synthesis(output_dir, num_images, seed, split, progress=bar.update)
    click.echo(f"synthesize: {summary.line()}")


@cli.command("quickstart")
@click.option(
    "-r",
    "--results_dir",
    default="results/quickstart",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the data, model, evaluation and renderings go; rerun to resume.",
)
@click.option("--train_images", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--val_images", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="[default: the quickstart spec's num_epoch]")
@log_level_option
@uses_tensorflow
def quickstart(results_dir: str, train_images: int, val_images: int, epochs: Optional[int]) -> None:
    """Synthetic data → dataset_convert → train → evaluate → inference on this machine (bpnet addition)."""
    from bpnet.quickstart import QuickstartSettings
    from bpnet.quickstart import quickstart as run_quickstart

    settings = QuickstartSettings(train_images=train_images, val_images=val_images, epochs=epochs)
    result = run_quickstart(results_dir, settings, say=click.echo)
    click.echo("validation keypoint AP (pycocotools):")
    for name, value in result.stats.items():
        click.echo(f"  {name:<22} {value:.4f}")
    click.echo(f"quickstart: everything is in {result.results_dir}")
    click.echo(f"  model             {result.model}")
    click.echo(f"  training curves   {os.path.join(os.path.dirname(result.model), 'results.png')} (training_log.csv)")
    click.echo(f"  evaluation        {result.evaluation_dir} (detections, results.csv, status.json, report/index.html)")
    click.echo(f"  rendered images   {result.rendered_dir}")
    click.echo(f"  specs             {os.path.join(result.results_dir, 'specs')} (train.yaml, infer.yaml)")


@cli.command("import_model")
@click.option(
    "-m",
    "--model",
    default=None,
    type=click.Path(dir_okay=False),
    help="Network to import: a tf-pose-estimation frozen graph (.pb), an OpenVINO IR (.xml) or an ONNX file.",
)
@click.option(
    "--name",
    default=None,
    help="A registered network to download (verified, cached) and import in place of -m (bpnet models lists them).",
)
@click.option(
    "-o",
    "--output_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The bpnet model: .onnx (from .pb or .onnx), .keras (trainable, from .pb or .onnx) or .xml (from an IR).",
)
@click.option(
    "--preset",
    default=None,
    type=click.Choice(["tf_pose", "lightweight_openpose"]),
    help="Known layout  [default: detected from the tensor names]",
)
@click.option(
    "--network",
    default=None,
    type=click.Path(dir_okay=False),
    help="YAML describing an ONNX network's channels (the fields of an inference spec's network block).",
)
@click.option(
    "--check_image",
    default=None,
    type=click.Path(dir_okay=False),
    help="A photo of people: the mapping is refused if the PAFs do not follow the limbs there.",
)
@click.option("--input_shape", default=None, help="Recommended H,W for inference  [default: the preset's]")
@log_level_option
def import_model(
    model: Optional[str],
    name: Optional[str],
    output_file: str,
    preset: Optional[str],
    network: Optional[str],
    check_image: Optional[str],
    input_shape: Optional[str],
) -> None:
    """Turn a public OpenPose-family network into a self-describing bpnet model (bpnet addition)."""
    from bpnet.importer import import_model as run_import

    if (model is None) == (name is None):
        raise BpnetError("import_model: give -m/--model (a file) or --name (a registered network), one of them")
    if name is not None and network is None:
        preset = preset or registry.registered(name).preset
    source = model if model is not None else str(registry.fetch(str(name)))
    shape = None
    if input_shape is not None:
        try:
            values = [int(v) for v in input_shape.split(",")]
        except ValueError:
            raise click.BadParameter("expected H,W", param_hint="--input_shape") from None
        shape = check_network_input_shape(values, "--input_shape")
    result = run_import(source, output_file, preset, network, check_image, shape)
    if result.check is not None:
        for line in result.check.lines():
            click.echo(line)
    click.echo(f"import_model: {result.preset} layout, input alignment {result.input_alignment}; model {result.model}")


@cli.command("models")
@log_level_option
def models() -> None:
    """The public networks bpnet downloads by name (import_model --name, -m NAME), with their licences."""
    rows = [("name", "licence", "download", "cached", "network"), *registry.listing()]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    click.echo(f"models: cache {registry.cache_dir()} (${registry.CACHE_ENV} moves it)")


def main() -> None:
    """Console entry point; SIGTERM ends a run as Ctrl-C does (``FAILURE`` in ``status.json``), with exit code 143."""
    signal.signal(signal.SIGTERM, raise_terminated)
    cli(prog_name="bpnet")
