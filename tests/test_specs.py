"""Spec loading: shipped specs, TLT values, strictness, paths, YAML/JSON, round trips."""

import dataclasses
import json
import typing
from pathlib import Path

import pytest
import yaml

from bpnet import spec_loader, specs
from bpnet.errors import SpecError

from .conftest import REPO_ROOT

SPECS = REPO_ROOT / "specs"
TRAIN_SPECS = sorted(SPECS.glob("bpnet_*.yaml"))
INFER_SPECS = sorted(SPECS.glob("infer_spec*.yaml"))


def test_every_tlt_spec_is_shipped():
    names = {p.name for p in SPECS.glob("*.yaml")}
    expected = {"bpnet_train_m1_coco.yaml", "bpnet_retrain_m1_coco.yaml"} | {
        f"infer_spec{suffix}.yaml"
        for suffix in ("", "_refine", "_strict", "_retrained", "_retrained_refine", "_retrained_strict")
    }
    assert expected <= names
    assert (REPO_ROOT / "data_pose_config" / "coco_spec.json").is_file()
    assert (REPO_ROOT / "model_pose_config" / "bpnet_18joints.json").is_file()


@pytest.mark.parametrize("path", TRAIN_SPECS, ids=lambda p: p.name)
def test_train_specs_load_and_name_existing_configs(path):
    spec = specs.load_train_spec(path)
    assert Path(spec.dataloader.pose_config.pose_config_path).is_file()
    for dataset_spec in spec.dataloader.dataset_config.dataset_specs.values():
        assert Path(dataset_spec).is_file()
    if spec.load_graph and spec.inference_spec is None:  # a model that carries its inference defaults (an import)
        assert path.name in ("bpnet_finetune_tf_pose_coco.yaml", "bpnet_retrain_pruned_tf_pose.yaml")
        return
    assert Path(spec.inference_spec).is_file()


@pytest.mark.parametrize("path", INFER_SPECS, ids=lambda p: p.name)
def test_inference_specs_load_and_any_train_spec_they_name_loads(path):
    spec = specs.load_inference_spec(path)
    if path.name == "infer_spec_small.yaml":  # bpnet's own models carry their metadata: no train spec
        assert spec.train_spec is None
        return
    assert Path(spec.train_spec).is_file()
    specs.load_train_spec(spec.train_spec)


def test_m1_spec_has_tlt_values():
    spec = specs.load_train_spec(SPECS / "bpnet_train_m1_coco.yaml")
    loader = spec.dataloader
    assert (spec.num_epoch, spec.checkpoint_n_epoch, spec.random_seed) == (20, 5, 42)
    assert spec.use_stagewise_lr_multipliers and not spec.load_graph
    assert loader.batch_size == 10 and loader.pose_config.target_shape == (32, 32) and loader.stride == 8
    assert loader.normalization_params.image_scale == (256.0, 256.0, 256.0)
    aug = loader.augmentation_config.spatial_aug_params
    assert (aug.flip_lr_prob, aug.rotate_deg_min, aug.rotate_deg_max, aug.target_person_scale) == (0.5, -40, 40, 0.6)
    assert loader.label_processor_config.heatmap_gaussian_sigma == 7.0
    assert isinstance(spec.model, specs.BpNetLiteModelSpec) and spec.model.stages == 3
    assert spec.model.kernel_regularization_factor == 5e-4 and spec.model.regularization_type == "l1"
    schedule = spec.optimizer.learning_rate_schedule
    assert isinstance(schedule, specs.SoftstartAnnealingSchedule)
    assert (schedule.base_learning_rate, schedule.min_learning_rate) == (2e-5, 8e-8)


def test_retrain_spec_differs_from_m1_only_where_tlt_does():
    train = spec_loader.to_dict(specs.load_train_spec(SPECS / "bpnet_train_m1_coco.yaml"))
    retrain = spec_loader.to_dict(specs.load_train_spec(SPECS / "bpnet_retrain_m1_coco.yaml"))
    changed = {k for k in train if train[k] != retrain[k]}
    assert changed == {"checkpoint_dir", "num_epoch", "pretrained_weights", "load_graph", "inference_spec"}
    assert retrain["load_graph"] is True and retrain["num_epoch"] == 50
    assert retrain["pretrained_weights"].endswith("exp_m1_pruned/bpnet_model.pruned-0.2.hdf5")


@pytest.mark.parametrize(
    "name, shape, mode, multi",
    [
        ("infer_spec", (368, 368), "adjust_network_input", False),
        ("infer_spec_refine", (368, 368), "adjust_network_input", True),
        ("infer_spec_strict", (288, 384), "pad_image_input", False),
        ("infer_spec_retrained", (368, 368), "adjust_network_input", False),
        ("infer_spec_retrained_refine", (368, 368), "adjust_network_input", True),
        ("infer_spec_retrained_strict", (288, 384), "pad_image_input", False),
    ],
)
def test_inference_spec_values(name, shape, mode, multi):
    spec = specs.load_inference_spec(SPECS / f"{name}.yaml")
    assert (spec.input_shape, spec.keep_aspect_ratio_mode, spec.multi_scale_inference) == (shape, mode, multi)
    assert spec.scales == (0.5, 1.0, 1.5, 2.0) and spec.output_upsampling_factor == (8, 8)
    assert (spec.heatmap_threshold, spec.paf_threshold) == (0.1, 0.05)
    assert Path(spec.train_spec).name == ("bpnet_retrain_m1_coco.yaml" if "retrained" in name else "bpnet_train_m1_coco.yaml")


def _write(tmp_path, data, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith(".yaml") else json.dumps(data))
    return path


def _m1_dict():
    return yaml.safe_load((SPECS / "bpnet_train_m1_coco.yaml").read_text())


def test_misspelled_key_names_its_path_and_suggests(tmp_path):
    data = _m1_dict()
    aug = data["dataloader"]["augmentation_config"]["spatial_aug_params"]
    aug["flip_lr_prb"] = aug.pop("flip_lr_prob")
    with pytest.raises(SpecError) as err:
        specs.load_train_spec(_write(tmp_path, data))
    message = str(err.value)
    assert "dataloader.augmentation_config.spatial_aug_params.flip_lr_prb: unknown key" in message
    assert "did you mean 'flip_lr_prob'?" in message
    assert str(tmp_path / "spec.yaml") in message


@pytest.mark.parametrize(
    "mutate, path, expected",
    [
        (lambda d: d["dataloader"].__setitem__("batch_size", "ten"), "dataloader.batch_size", "expected an integer"),
        (
            lambda d: d["model"].__setitem__("regularization_type", "l3"),
            "model.regularization_type",
            "one of 'l1', 'l2', 'l1_l2'",
        ),
        (
            lambda d: d["dataloader"]["pose_config"].__setitem__("target_shape", [32]),
            "dataloader.pose_config.target_shape",
            "a list of 2 values",
        ),
        (lambda d: d["dataloader"].__setitem__("batch_size", 0), "dataloader.batch_size", "must be positive"),
        (lambda d: d.__setitem__("checkpoint_n_epoch", 3), "checkpoint_n_epoch", "divide num_epoch"),
        (
            lambda d: d["dataloader"]["augmentation_config"]["spatial_aug_params"].__setitem__("flip_lr_prob", 1.5),
            "dataloader.augmentation_config.spatial_aug_params.flip_lr_prob",
            "must be in [0, 1]",
        ),
        (
            lambda d: d["model"].__setitem__("__class_name__", "BpNetLiteModle"),
            "model.__class_name__",
            "did you mean 'BpNetLiteModel'",
        ),
        (lambda d: d["model"].pop("__class_name__"), "model", "missing __class_name__"),
        (lambda d: d.__setitem__("__class_name__", "BpNetEvaluator"), "__class_name__", "expected 'BpNetTrainer'"),
        (lambda d: d["dataloader"].pop("batch_size"), "dataloader", "missing required key 'batch_size'"),
        (
            lambda d: d["dataloader"]["image_config"]["image_dims"].__setitem__("height", 260),
            "dataloader.pose_config.target_shape",
            "must divide",
        ),
    ],
)
def test_wrong_values_name_their_path(tmp_path, mutate, path, expected):
    data = _m1_dict()
    mutate(data)
    with pytest.raises(SpecError) as err:
        specs.load_train_spec(_write(tmp_path, data))
    assert f": {path}" in str(err.value) and expected in str(err.value)


def test_model_class_is_chosen_by_class_name(tmp_path):
    data = _m1_dict()
    data["model"]["__class_name__"] = "BpNetModel"
    del data["model"]["heat_channels"]
    spec = specs.load_train_spec(_write(tmp_path, data))
    assert isinstance(spec.model, specs.BpNetModelSpec) and spec.model.heat_channels is None


def test_relative_paths_resolve_against_the_spec_folder_and_absolute_ones_are_kept(tmp_path):
    data = _m1_dict()
    data["dataloader"]["dataset_config"]["root_data_path"] = "/workspace/tao-experiments/bpnet/data/"
    (tmp_path / "sub").mkdir()
    spec = specs.load_train_spec(_write(tmp_path / "sub", data))
    config = spec.dataloader.dataset_config
    assert config.root_data_path == "/workspace/tao-experiments/bpnet/data"
    assert config.train_records_folder_path == str(tmp_path / "data")
    assert config.dataset_specs["coco"] == str(tmp_path / "data_pose_config" / "coco_spec.json")
    assert config.train_record_files == (str(tmp_path / "data" / "train-fold-000-of-001"),)
    assert spec.checkpoint_dir == str(tmp_path / "results" / "models" / "exp_m1_unpruned")


def test_imagenet_is_not_a_path(tmp_path):
    data = _m1_dict()
    data["pretrained_weights"] = "imagenet"
    assert specs.load_train_spec(_write(tmp_path, data)).pretrained_weights == "imagenet"


def test_json_and_yaml_load_the_same_spec(tmp_path):
    data = _m1_dict()
    from_yaml = specs.load_train_spec(_write(tmp_path, data, "spec.yaml"))
    from_json = specs.load_train_spec(_write(tmp_path, data, "spec.json"))
    assert from_yaml == from_json


def test_resolved_spec_round_trips_through_yaml_from_another_folder(tmp_path):
    for path in TRAIN_SPECS + INFER_SPECS:
        loader = specs.load_inference_spec if path.name.startswith("infer") else specs.load_train_spec
        original = loader(path)
        out = tmp_path / "elsewhere" / path.name
        out.parent.mkdir(exist_ok=True)
        spec_loader.dump_yaml(original, str(out))
        assert loader(out) == original
        assert "__class_name__" in out.read_text() or path.name.startswith("infer")


def test_null_defaults_are_filled_like_tlt(tmp_path):
    data = _m1_dict()
    aug = data["dataloader"]["augmentation_config"]["spatial_aug_params"]
    del aug["rotate_deg_min"], aug["translate_min_x"]
    data["dataloader"]["augmentation_config"]["spatial_augmentation_mode"] = None
    data["dataloader"]["shuffle_buffer_size"] = None
    spec = specs.load_train_spec(_write(tmp_path, data))
    params = spec.dataloader.augmentation_config.spatial_aug_params
    assert (params.rotate_deg_min, params.translate_min_x) == (-40.0, -40.0)
    assert spec.dataloader.augmentation_config.spatial_augmentation_mode == "person_centric"
    assert spec.dataloader.shuffle_buffer_size == 20000


def test_keep_aspect_ratio_mode_none_string_means_plain_resize(tmp_path):
    data = yaml.safe_load((SPECS / "infer_spec.yaml").read_text())
    data["keep_aspect_ratio_mode"] = "None"  # TLT's YAML quirk (reference §8 item 12)
    data["train_spec"] = str(SPECS / "bpnet_train_m1_coco.yaml")
    assert specs.load_inference_spec(_write(tmp_path, data)).keep_aspect_ratio_mode is None


def test_floats_written_without_a_dot_are_accepted(tmp_path):
    text = (SPECS / "bpnet_train_m1_coco.yaml").read_text().replace("base_learning_rate: 2.e-5", "base_learning_rate: 2e-5")
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace("../", str(SPECS.parent) + "/"))
    assert specs.load_train_spec(path).optimizer.learning_rate_schedule.base_learning_rate == 2e-5


@pytest.mark.parametrize(
    "text, expected",
    [("a: [1, 2\nb: 3\n", "invalid YAML"), ("- 1\n- 2\n", "expected a mapping at the top level")],
)
def test_unparseable_files_give_one_line(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        specs.load_train_spec(path)
    assert expected in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        specs.load_dataset_spec(tmp_path / "nope.json")


def test_dataset_spec_and_pose_config_validate_their_skeleton(tmp_path):
    data = json.loads((REPO_ROOT / "model_pose_config" / "bpnet_18joints.json").read_text())
    data["categories"][0]["skeleton"][3] = [2, 19]
    with pytest.raises(SpecError, match=r"categories\[0\]\.skeleton\[3\]: indices must be in 1..18"):
        specs.load_pose_config(_write(tmp_path, data, "pose.json"))
    data = json.loads((REPO_ROOT / "data_pose_config" / "coco_spec.json").read_text())
    data["visibility_flags"]["mapping"]["occluded"] = "ocluded"
    with pytest.raises(SpecError, match=r"visibility_flags\.mapping\.occluded: expected one of .*did you mean 'occluded'"):
        specs.load_dataset_spec(_write(tmp_path, data, "coco.json"))


def test_every_spec_field_is_documented():
    text = (REPO_ROOT / "docs" / "specs.md").read_text()
    classes = [specs.TrainSpec, specs.InferenceSpec, specs.DatasetSpec, specs.PoseConfig]
    seen = set()
    while classes:
        cls = classes.pop()
        if cls in seen:
            continue
        seen.add(cls)
        assert f"### `{cls.__name__}`" in text
        for field in dataclasses.fields(cls):
            assert f"| `{field.name}` |" in text, f"{cls.__name__}.{field.name} is not in docs/specs.md"
        for hint in typing.get_type_hints(cls).values():
            stack = [hint]
            while stack:
                tp = stack.pop()
                if dataclasses.is_dataclass(tp):
                    classes.append(tp)
                stack.extend(typing.get_args(tp))


def test_the_decoder_preset_gives_the_decoder_settings_and_spec_thresholds_override_it():
    from bpnet.infer.decode import DECODER_PRESETS, DecoderParams
    from bpnet.infer.predict import decoder_params

    tlt = specs.InferenceSpec()
    assert decoder_params(tlt, 8) == dataclasses.replace(DecoderParams(), search_step=4)
    accurate = specs.InferenceSpec(decoder_preset="accurate")
    params = decoder_params(accurate, 8)
    assert (params.heatmap_threshold, params.min_parts, params.person_score) == (0.05, 3, "found_mean_sqrt")
    assert dataclasses.replace(params, search_step=1) == DECODER_PRESETS["accurate"]
    overridden = decoder_params(specs.InferenceSpec(decoder_preset="accurate", heatmap_threshold=0.2), 8)
    assert (overridden.heatmap_threshold, overridden.min_parts) == (0.2, 3)
    with pytest.raises(SpecError, match="decoder_preset"):
        spec_loader.from_dict(specs.InferenceSpec, {"decoder_preset": "fast"}, source="infer.yaml")
