"""The machinery under the ``bpnet`` command: logging configured once, TensorFlow imported quietly, TLT's
multi-value flags, and the group that turns expected failures into one ``Error:`` line and exit code 2
(:func:`bpnet.errors.describe_failure`; ``-ll DEBUG`` adds the traceback), Ctrl-C and SIGTERM into a short
message. :mod:`bpnet.cli` holds the commands."""

import functools
import logging
import os
import sys
import traceback
from typing import Any, Callable, List

import click

from bpnet import launcher
from bpnet.errors import describe_failure
from bpnet.status import Terminated

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
USER_ERROR_EXIT_CODE = 2
TERMINATED_EXIT_CODE = 128 + 15  # SIGTERM, as a shell reports a process it killed


class _ProgressBarSafeHandler(logging.StreamHandler):
    """Writes log lines through tqdm, so they appear above a running progress bar instead of breaking it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 (logging must never raise)
            self.handleError(record)


NOISY_LOGGERS = ("tensorflow", "tf2onnx", "absl", "h5py", "onnxruntime")
"""Third-party loggers kept at WARNING (ERROR for tf2onnx) unless ``-ll DEBUG``: their INFO lines are chatter."""


def configure_logging(level: str) -> None:
    """Set the root logger's format and level (called by the group and by a subcommand's ``-ll``), and keep
    TensorFlow's C++ start-up lines (CUDA probing, CPU features) off the terminal unless ``DEBUG``."""
    root = logging.getLogger()
    if not any(isinstance(h, _ProgressBarSafeHandler) for h in root.handlers):
        handler = _ProgressBarSafeHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(launcher.LOG_FORMAT, launcher.LOG_DATE_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    debug = level == "DEBUG"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if debug else "3"
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.ERROR if name == "tf2onnx" else logging.WARNING)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr (file descriptor 2) silenced, unless logging at DEBUG.

    TensorFlow's CUDA stubs print their lines before its logging is set up, so ``TF_CPP_MIN_LOG_LEVEL``
    cannot hide them. What the import printed is shown if the import fails.
    """
    if "tensorflow" in sys.modules or logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            import absl.logging
            import tensorflow  # noqa: F401

            absl.logging.set_verbosity(absl.logging.ERROR)
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))


def uses_tensorflow(func: Callable[..., Any]) -> Callable[..., Any]:
    """A subcommand that needs TensorFlow imports it quietly first (see :func:`import_tensorflow_quietly`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import_tensorflow_quietly()
        return func(*args, **kwargs)

    return wrapper


NARGS_STAR_OPTIONS = ("-el", "--excluded_layers", "--gpu_index")
"""TLT's argparse options taking any number of values (``-el a b c``); click takes one value per flag."""


def expand_multi_value_options(args: List[str]) -> List[str]:
    """``[-el, a, b, -pth, 0.2]`` → ``[-el, a, -el, b, -pth, 0.2]``: TLT's ``nargs='*'`` spelling."""
    expanded: List[str] = []
    current = None
    for arg in args:
        if arg in NARGS_STAR_OPTIONS:
            current = arg
            expanded.append(arg)
            continue
        if current is not None and not arg.startswith("-"):
            if expanded[-1] != current:
                expanded.append(current)
            expanded.append(arg)
            continue
        current = None
        expanded.append(arg)
    return expanded


class BpnetGroup(click.Group):
    """Turns user errors into one line and exit code 2; accepts TLT's multi-value ``-el a b``."""

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        return super().parse_args(ctx, expand_multi_value_options(args))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return self._invoke(ctx)
        finally:
            stop_log_file = ctx.meta.pop("bpnet.stop_log_file", None)
            if stop_log_file is not None:
                stop_log_file()

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            message = describe_failure(exc)
            if message is None:
                raise
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                traceback.print_exc()
            click.echo(f"Error: {' '.join(message.split())}", err=True)
            ctx.exit(USER_ERROR_EXIT_CODE)
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            click.echo(
                f"{'Terminated (SIGTERM)' if terminated else 'Interrupted'}; finished outputs are kept, "
                "unfinished ones were not written.",
                err=True,
            )
            ctx.exit(TERMINATED_EXIT_CODE if terminated else 130)
