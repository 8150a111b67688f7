"""Option groups the ``bpnet`` commands share, declared once: ``--set``, ``-i``/``-m`` of the commands that run a
model, ``-ll`` on a subcommand, ``-k`` (TLT's key) and TLT's launcher flags (:mod:`bpnet.launcher`)."""

import os
from typing import Any, Callable, Optional, Tuple

import click

from bpnet import launcher
from bpnet.cli_support import LOG_LEVELS, configure_logging


def set_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--set key.path=value`` (repeatable): change a spec value without editing the file (bpnet addition)."""
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY.PATH=VALUE",
        help="Override a spec value (repeatable), typed and validated like the file, e.g. --set num_epoch=3.",
    )(func)


def predictor_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-i/--inference_spec`` and ``-m/--model_filename`` of the commands that run a model."""
    func = click.option(
        "-m",
        "--model_filename",
        default=None,
        type=click.Path(dir_okay=False),
        help="Model (.keras/.h5/.hdf5/.onnx, an OpenVINO .xml, a TensorRT engine) or a registered network's name "
        "(bpnet models)  [default: the spec's model_path]",
    )(func)
    return click.option(
        "-i",
        "--inference_spec",
        default=None,
        type=click.Path(dir_okay=False),
        help="Inference spec (YAML)  [default: the model's own settings; a model with bpnet metadata needs no spec]",
    )(func)


def _gpu_index(ctx: click.Context, _param: click.Parameter, value: Tuple[int, ...]) -> None:
    if value:
        launcher.set_visible_gpus(value)
        ctx.meta["bpnet.gpu_index"] = value


def _log_file(ctx: click.Context, _param: click.Parameter, value: Optional[str]) -> None:
    if value:
        ctx.meta["bpnet.stop_log_file"] = launcher.tee_to_log_file(value)


def _num_processes(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    ctx.meta["bpnet.num_processes"] = value
    if ctx.info_name != "train":
        launcher.single_process(str(ctx.info_name), value, 1)


def _single_device(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    launcher.single_process(str(ctx.info_name), -1, value)


def _cuda_blocking(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        os.environ["CUDA_LAUNCH_BLOCKING"] = "1"


def launcher_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """TLT's launcher flags, accepted by every TLT task (:mod:`bpnet.launcher` says what each does here)."""
    options = [
        click.option(
            "--gpu_index",
            multiple=True,
            type=click.IntRange(min=0),
            expose_value=False,
            is_eager=True,
            callback=_gpu_index,
            help="GPU indices to use (CUDA_VISIBLE_DEVICES), as TLT's launcher: --gpu_index 0 1.",
        ),
        click.option(
            "--log_file",
            type=click.Path(dir_okay=False),
            expose_value=False,
            is_eager=True,
            callback=_log_file,
            help="Also write the output (log, results, errors) to this file, appended.",
        ),
        click.option(
            "-np",
            "--num_processes",
            type=int,
            default=-1,
            expose_value=False,
            callback=_num_processes,
            help="TLT's Horovod process count: train → that many GPUs in one process; other tasks take 1.",
        ),
        click.option("--launch_cuda_blocking", is_flag=True, hidden=True, expose_value=False, callback=_cuda_blocking),
    ]
    if func.__name__ != "train":  # train has its own --gpus
        options.append(
            click.option(
                "--gpus",
                type=click.IntRange(min=1),
                default=1,
                expose_value=False,
                callback=_single_device,
                help="Accepted for TLT compatibility: this task runs on one device.",
            )
        )
    for option in options:
        func = option(func)
    return func


def _set_log_level(ctx: click.Context, _param: click.Parameter, value: Optional[str]) -> Optional[str]:
    if value is not None:
        configure_logging(value.upper())
    return value


def log_level_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-ll/--log_level`` on a subcommand, as TLT places it (``bpnet train ... -ll DEBUG``)."""
    return click.option(
        "-ll",
        "--log_level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_set_log_level,
        help="Logging level (overrides the one given before the subcommand).",
    )(func)


def key_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """TLT's ``-k/--key``: it decrypted ``.tlt`` models; bpnet's models are plain files."""
    return click.option("-k", "--key", default="", help="Accepted for TLT compatibility; unused (models are not encrypted).")(
        func
    )
