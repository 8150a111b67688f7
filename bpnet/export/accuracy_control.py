"""INT8 under an accuracy budget (bpnet addition): NNCF's ``quantize_with_accuracy_control`` judged by a pose metric.

``bpnet export --target openvino --data_type int8 --int8_accuracy_control``: NNCF quantises the IR (all but the
output convolutions and ``--int8_keep_float`` or, without it, the imported model's recommended float layers); when
that model is below the budget, it ranks the quantised operations by how much of the metric each one
costs (each put back in float on its own, on the images where INT8 and FP32 differ most), then puts them back in
float, the costliest first, until the metric is within the budget. The operations left in float are logged and
recorded in the INT8 model's metadata.

The metric is the export check's pose AP: each candidate runs through bpnet's own decoder on the calibration
images and its people are scored against the FP32 model's people as ground truth
(:func:`bpnet.export.agreement.pseudo_ap`; FP32 scores 1 against itself); the budget is ``1 − --min_int8_pose_ap``.
No labels are needed. ``--val_spec`` still gates the result on true AP afterwards; it is not the search's metric
(COCO AP at each image's own size recompiles the candidate per image shape: a search on 40 images had not
finished after an hour on 2 cores).

Only OpenVINO targets: NNCF's accuracy control runs OpenVINO models (ONNX Runtime's quantiser has none).
"""

import dataclasses
import logging
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from bpnet.export.agreement import PeopleDecoder, keypoint_sigmas, pseudo_ap
from bpnet.infer.backends import CompiledOpenVinoBackend, open_backend
from bpnet.infer.runtime import OutputLayout

logger = logging.getLogger(__name__)

People = Tuple[np.ndarray, np.ndarray]
"""One image's people: keypoints ``(P, K, 3)`` (x, y, score; 0 = missing) and scores ``(P,)``."""


@dataclasses.dataclass
class PoseMetric:
    """NNCF validation function: the pose AP of a compiled candidate's people against ``reference`` (per
    calibration batch, per image, the FP32 model's people). Validation items are ``(batch index, batch)``."""

    reference: List[List[People]]
    decode: PeopleDecoder
    sigmas: np.ndarray
    layout: OutputLayout
    channels_last: bool
    name: str = "pose AP against FP32's people on the calibration images"

    def __call__(self, compiled, items) -> Tuple[float, None]:
        backend = CompiledOpenVinoBackend(compiled, "INT8 candidate", self.layout, self.channels_last)
        images = []
        for index, batch in items:
            for (truth, _), (found, scores) in zip(self.reference[index], self.decode(*backend(batch))):
                images.append((truth, found, scores))
        value = pseudo_ap(images, self.sigmas)
        return (1.0 if value is None else value), None  # nobody to find: nothing lost


@dataclasses.dataclass(frozen=True)
class AccuracyControl:
    """What :func:`bpnet.export.openvino_export.quantize_openvino_int8` needs for NNCF's accuracy control."""

    metric: PoseMetric
    items: Sequence[Any]
    max_drop: float


def pose_control(xml_path: str, calibration: np.ndarray, min_pose_ap: float) -> AccuracyControl:
    """Accuracy control by pose AP: the FP32 model at ``xml_path`` (with bpnet metadata) labels ``calibration``
    ``(batches, N, H, W, 3)`` (the inference preprocessing; backends transpose for channels-first networks)."""
    opened = open_backend(xml_path)
    decode = PeopleDecoder(opened.metadata, opened.info)
    backend = opened.backend
    batches = [np.asarray(batch, np.float32) for batch in calibration]
    reference = [decode(*backend(batch)) for batch in batches]
    metric = PoseMetric(reference, decode, keypoint_sigmas(opened.info.skeleton.keypoints), backend.layout, backend.channels_last)
    return AccuracyControl(metric, list(enumerate(batches)), 1.0 - min_pose_ap)


def float_operations(model) -> List[str]:
    """Friendly names of an NNCF-quantised OpenVINO model's convolutions that run in float: those whose
    activation input does not come through a FakeQuantize."""
    kinds = ("Convolution", "GroupConvolution")
    return [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() in kinds and op.input_value(0).get_node().get_type_name() != "FakeQuantize"
    ]


def quantize_with_control(
    nncf, model, settings: Dict[str, Any], quantization_parameters, control: AccuracyControl
) -> Tuple[Any, List[str]]:
    """NNCF's ``quantize_with_accuracy_control`` of ``model`` (an ``openvino.Model``) with the quantisation
    ``settings`` of :func:`bpnet.export.openvino_export.quantize_openvino_int8` (calibration dataset, preset, subset
    size, ignored scope) and NNCF's ``AdvancedQuantizationParameters`` ``quantization_parameters``, judged by
    ``control``; returns the quantised model and its convolutions left in float."""
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    logger.info(
        "INT8 accuracy control: %s on %d items, budget: a drop of at most %.3f",
        control.metric.name,
        len(control.items),
        control.max_drop,
    )
    quantized = nncf.quantize_with_accuracy_control(
        model,
        validation_dataset=nncf.Dataset(list(control.items)),
        validation_fn=control.metric,
        max_drop=control.max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_quantization_parameters=quantization_parameters,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(num_ranking_workers=1),
        **settings,
    )
    kept = float_operations(quantized)
    logger.info("INT8 accuracy control: %d convolutions run in float: %s", len(kept), ", ".join(kept) or "none")
    return quantized, kept
