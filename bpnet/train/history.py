"""What ``bpnet train`` shows of a run: ``training_log.csv`` (a row per epoch) and ``results.png`` drawn from it.

Columns: ``epoch``, ``step``, ``loss`` (mean total loss of the epoch), ``heatmap_loss_stageN`` and
``paf_loss_stageN`` (mean per stage), ``distillation_loss``, ``learning_rate`` (at the epoch's end),
``validation_loss`` and ``validation_AP`` (COCO keypoint AP on the validation split, on the epochs validated;
empty otherwise). Both files are rewritten whole (atomically) after every epoch; a resumed run keeps the rows up
to the epoch it resumes from.
"""

import csv
import math
import os
from typing import Dict, List, Optional, Sequence

from bpnet.files import atomic_path

LOG_NAME = "training_log.csv"
PLOT_NAME = "results.png"


def stage_columns(stages: int) -> List[str]:
    return [f"{kind}_loss_stage{s}" for kind in ("heatmap", "paf") for s in range(1, stages + 1)]


def columns(stages: int) -> List[str]:
    return [
        "epoch",
        "step",
        "loss",
        *stage_columns(stages),
        "distillation_loss",
        "learning_rate",
        "validation_loss",
        "validation_AP",
    ]


class TrainingHistory:
    """The rows of ``training_log.csv`` in ``results_dir``; :meth:`add` writes the CSV and ``results.png``."""

    def __init__(self, results_dir: str, stages: int, resume_epoch: int):
        self.csv_path = os.path.join(results_dir, LOG_NAME)
        self.plot_path = os.path.join(results_dir, PLOT_NAME)
        self.columns = columns(stages)
        self.stages = stages
        self.rows: List[Dict[str, str]] = []
        if resume_epoch and os.path.isfile(self.csv_path):
            with open(self.csv_path, newline="") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames == self.columns:
                    self.rows = [row for row in reader if row["epoch"].isdigit() and int(row["epoch"]) <= resume_epoch]

    def add(self, values: Dict[str, Optional[float]]) -> None:
        """Record one epoch (``values`` keyed by :func:`columns`; None or absent: empty) and redraw."""
        self.rows.append({name: _cell(values.get(name)) for name in self.columns})
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        plot(self.rows, self.stages, self.plot_path)


def _cell(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:.6g}"


def _series(rows: Sequence[Dict[str, str]], name: str):
    """``(epochs, values)`` of the rows where ``name`` is set."""
    kept = [(int(row["epoch"]), float(row[name])) for row in rows if row.get(name)]
    return [e for e, _ in kept], [v for _, v in kept]


def plot(rows: Sequence[Dict[str, str]], stages: int, path: str) -> None:
    """``results.png``: total and validation loss, the loss per stage, the learning rate and the validation AP,
    each against the epoch (2 × 2 panels, 1200 × 900 pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(12, 9), dpi=100)
    (total, per_stage), (rate, ap) = figure.subplots(2, 2)
    for name, label in (
        ("loss", "training loss"),
        ("validation_loss", "validation loss (per image)"),
        ("distillation_loss", "distillation loss"),
    ):
        epochs, values = _series(rows, name)
        if epochs:
            total.plot(epochs, values, marker="o", label=label)
    total.set_title("Loss")
    for s in range(1, stages + 1):
        for kind, style in (("heatmap", "-"), ("paf", "--")):
            epochs, values = _series(rows, f"{kind}_loss_stage{s}")
            if epochs:
                per_stage.plot(epochs, values, style, label=f"{kind} stage {s}")
    per_stage.set_title("Loss per stage (heatmaps solid, PAFs dashed)")
    epochs, values = _series(rows, "learning_rate")
    rate.plot(epochs, values, marker="o")
    rate.set_title("Learning rate (end of epoch)")
    epochs, values = _series(rows, "validation_AP")
    if epochs:
        ap.plot(epochs, values, marker="o", color="tab:green")
    else:
        ap.text(0.5, 0.5, "no validated epoch yet\n(validation_every_n_epoch, a test split)", ha="center", va="center")
    ap.set_title("Validation COCO keypoint AP")
    for axes in (total, per_stage, rate, ap):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
