"""``bpnet quickstart``: synthetic data → dataset_convert → train → evaluate → inference, on a CPU.

Every step is the one the COCO workflow uses (the same functions behind ``bpnet dataset_convert``,
``train``, ``evaluate`` and ``inference``); only the data (``bpnet.synthesize``) and the model size
(``specs/quickstart_train.yaml``) differ. Rerunning resumes: finished data is kept and training
continues from its last checkpoint.
"""

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable, Dict, Optional

from tqdm import tqdm

from bpnet import spec_loader
from bpnet.errors import BpnetError
from bpnet.files import atomic_path
from bpnet.resources import resource_path
from bpnet.specs import TrainSpec, load_dataset_spec, load_inference_spec, load_train_spec

logger = logging.getLogger(__name__)

QUICKSTART_TRAIN_SPEC = resource_path("specs", "quickstart_train.yaml")
QUICKSTART_RETRAIN_SPEC = resource_path("specs", "quickstart_retrain.yaml")
QUICKSTART_INFER_SPEC = resource_path("specs", "quickstart_infer.yaml")
COCO_DATASET_SPEC = resource_path("data_pose_config", "coco_spec.json")


@dataclasses.dataclass(frozen=True)
class QuickstartSettings:
    train_images: int = 1000
    val_images: int = 100
    seed: int = 0
    epochs: Optional[int] = None  # default: the spec's num_epoch
    inference_images: int = 12  # val images rendered by the inference step


@dataclasses.dataclass(frozen=True)
class QuickstartResult:
    results_dir: str
    stats: Dict[str, float]
    model: str
    evaluation_dir: str
    rendered_dir: str


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(str(path)) as temporary:
        Path(temporary).write_text(text)


def _synthesize_split(data_dir: Path, split: str, count: int, seed: int, say: Callable[[str], None]) -> None:
    from bpnet.synthesize import synthesize

    manifest = data_dir / f"synthesis_{split}.json"
    wanted = {"images": count, "seed": seed}
    if manifest.is_file() and json.loads(manifest.read_text()) == wanted:
        say(f"synthesize {split}: kept ({count} images, seed {seed})")
        return
    with tqdm(total=count, desc=f"synthesize {split}", unit="img") as bar:
        summary = synthesize(str(data_dir), count, seed, split, progress=bar.update)
    _write_text(manifest, json.dumps(wanted))
    say(f"synthesize {split}: {summary.line()}")


def _convert_split(data_dir: Path, mode: str, say: Callable[[str], None]) -> None:
    from bpnet.data.convert import convert_dataset

    split = "train" if mode == "train" else "val"
    prefix = data_dir / split
    done = data_dir / f"converted_{mode}.json"
    synthesis = data_dir / f"synthesis_{split}.json"
    if done.is_file() and done.read_text() == synthesis.read_text():
        say(f"dataset_convert {mode}: kept")
        return
    summary = convert_dataset(
        str(data_dir / "dataset_spec.json"),
        str(prefix),
        mode=mode,
        generate_masks=True,
        results_dir=str(data_dir / f"convert_{mode}"),
    )
    _write_text(done, synthesis.read_text())
    say(f"dataset_convert {mode}: {summary.line()}")


def _pointed_at(source: Path, results_dir: Path, checkpoint_dir: Path, epochs: Optional[int]) -> TrainSpec:
    """A quickstart train (or retrain) spec with its paths pointing into ``results_dir``."""
    data_dir, spec_dir = str(results_dir / "data"), results_dir / "specs"
    train = load_train_spec(str(source))
    loader = train.dataloader
    records = dataclasses.replace(
        loader.dataset_config,
        root_data_path=data_dir,
        train_records_folder_path=data_dir,
        val_records_folder_path=data_dir,
        dataset_specs={"coco": str(results_dir / "data" / "dataset_spec.json")},
    )
    return dataclasses.replace(
        train,
        checkpoint_dir=str(checkpoint_dir),
        inference_spec=str(spec_dir / "infer.yaml"),
        num_epoch=train.num_epoch if epochs is None else epochs,
        dataloader=dataclasses.replace(loader, dataset_config=records),
    )


def write_specs(results_dir: Path, epochs: Optional[int]) -> Dict[str, Path]:
    """The dataset, train, retrain and inference specs of a quickstart run, pointing at its folders: the
    shipped specs loaded, changed with ``dataclasses.replace`` and written back (paths absolute)."""
    for source in (QUICKSTART_TRAIN_SPEC, QUICKSTART_RETRAIN_SPEC, QUICKSTART_INFER_SPEC, COCO_DATASET_SPEC):
        if not source.is_file():
            raise BpnetError(f"{source}: not found; the quickstart needs the specs of the bpnet source tree")
    data_dir, spec_dir = results_dir / "data", results_dir / "specs"
    dataset = dataclasses.replace(load_dataset_spec(str(COCO_DATASET_SPEC)), root_directory_path=str(data_dir))
    train = _pointed_at(QUICKSTART_TRAIN_SPEC, results_dir, results_dir / "model", epochs)
    retrain = dataclasses.replace(
        _pointed_at(QUICKSTART_RETRAIN_SPEC, results_dir, results_dir / "retrain", None),
        pretrained_weights=str(results_dir / "pruned" / "bpnet_model.pruned.keras"),
    )
    infer = dataclasses.replace(
        load_inference_spec(str(QUICKSTART_INFER_SPEC)),
        model_path=str(results_dir / "model" / "bpnet_model.keras"),
        train_spec=str(spec_dir / "train.yaml"),
    )
    paths = {
        "dataset": data_dir / "dataset_spec.json",
        "train": spec_dir / "train.yaml",
        "retrain": spec_dir / "retrain.yaml",
        "infer": spec_dir / "infer.yaml",
    }
    _write_text(paths["dataset"], json.dumps(spec_loader.to_dict(dataset), indent=2))
    for name, spec in (("train", train), ("retrain", retrain), ("infer", infer)):
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        spec_loader.dump_yaml(spec, str(paths[name]))
    return paths


def quickstart(
    results_dir: str, settings: QuickstartSettings = QuickstartSettings(), say: Callable[[str], None] = logger.info
) -> QuickstartResult:
    """Run the whole workflow into ``results_dir`` (see the module docstring)."""
    from bpnet.infer.evaluate import evaluate
    from bpnet.infer.inference import inference
    from bpnet.train.trainer import train

    root = Path(results_dir).resolve()
    data_dir = root / "data"
    paths = write_specs(root, settings.epochs)
    _synthesize_split(data_dir, "train", settings.train_images, settings.seed, say)
    _synthesize_split(data_dir, "val", settings.val_images, settings.seed + 1, say)
    _convert_split(data_dir, "train", say)
    _convert_split(data_dir, "test", say)
    result = train(str(paths["train"]), str(root / "model"))
    say(f"train: {result.epochs} epochs, {result.steps} steps; model {result.final_model}")
    stats = evaluate(str(paths["infer"]), str(paths["dataset"]), str(root / "evaluate"), result.final_model)
    val_images = sorted((data_dir / "val2017").glob("*.jpg"))[: settings.inference_images]
    listing = root / "inference_inputs.json"
    _write_text(listing, json.dumps([str(p) for p in val_images]))
    inference(str(paths["infer"]), "json", str(listing), str(root / "inference"), result.final_model, dump_visualizations=True)
    return QuickstartResult(
        str(root), stats, result.final_model, str(root / "evaluate"), str(root / "inference" / "images_annotated")
    )
