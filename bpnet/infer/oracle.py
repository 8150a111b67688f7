"""The decoding oracle: ground truth → training targets → upsampling → decoder → COCO AP.

It measures what the decoder (with given settings) can recover from perfect network outputs, so
it bounds the AP any trained model can reach through it. Per image: scale to the network input as
``adjust_network_input`` does (the shorter side to ``input_size``, aspect kept), render the model
skeleton's heatmaps and PAFs at stride ``stride`` (σ and PAF width of the m1 spec), decode them as
upsampled bicubically by the stride (as inference does: around the peaks, or in full with
``upsampling_mode: full``), map back to the image, write COCO results.
"""

import dataclasses
from typing import Dict, Literal, Optional, Tuple

import numpy as np

from bpnet.data import targets
from bpnet.infer.coco_eval import evaluate_keypoints
from bpnet.infer.decode import DecoderParams, decode
from bpnet.infer.resize import resize_maps
from bpnet.infer.results import Prediction
from bpnet.skeleton import Skeleton
from bpnet.specs import Category, VisibilityFlags


def dataset_skeleton(category: Category) -> Skeleton:
    """The dataset's own keypoints and limbs as a model skeleton (COCO: 17 keypoints, 19 limbs)."""
    return Skeleton(category.name, tuple(category.keypoints), tuple((a - 1, b - 1) for a, b in category.skeleton))


def fully_connected(skeleton: Skeleton) -> Skeleton:
    """The same keypoints with a limb between every pair (K·(K−1)/2 limbs): any two labeled keypoints of
    a person are linked by a PAF, so partially labeled people stay in one piece."""
    pairs = tuple((a, b) for a in range(skeleton.num_keypoints) for b in range(a + 1, skeleton.num_keypoints))
    return Skeleton(f"{skeleton.name}_fully_connected", skeleton.keypoints, pairs)


ORACLE_DECODER = DecoderParams(min_parts=1, min_mean_score=0.0, single_part_people=True, subpixel=True, matching="optimal")
"""Settings that can report people with 1–3 labeled keypoints (COCO scores them too)."""


@dataclasses.dataclass(frozen=True)
class OracleSettings:
    input_size: int = 368
    stride: int = 8
    sigma: float = 7.0
    paf_half_width: float = 1.0
    upsampling: int = 8  # maps are decoded as upsampled bicubically by this factor (TLT: the stride)
    upsampling_mode: Literal["local", "full"] = "local"  # local: the decoder upsamples around peaks; full: all first
    decoder: DecoderParams = ORACLE_DECODER


def perfect_maps(
    joints: np.ndarray, limbs, target_shape: Tuple[int, int], settings: OracleSettings
) -> Tuple[np.ndarray, np.ndarray]:
    """The training targets of ``joints (P, K, 3)`` (network-input pixels) on a ``target_shape`` (h, w) grid,
    bicubically upsampled by ``settings.upsampling`` as inference does: ``(heatmaps, PAFs)``."""
    out_h, out_w = target_shape
    heat = targets.heatmaps(joints, target_shape, settings.stride, settings.sigma)
    paf = targets.pafs(joints, limbs, target_shape, settings.stride, settings.paf_half_width)
    if settings.upsampling > 1:
        size = (out_w * settings.upsampling, out_h * settings.upsampling)
        heat, paf = resize_maps(heat, size), resize_maps(paf, size)
    return heat, paf


def oracle_prediction(annotations, height: int, width: int, skeleton: Skeleton, mapping, settings: OracleSettings) -> Prediction:
    """Decode the perfect maps of one image's annotations (COCO dicts with keypoints)."""
    scale = settings.input_size / min(height, width)
    net_h, net_w = int(round(height * scale)), int(round(width * scale))
    out_h, out_w = -(-net_h // settings.stride), -(-net_w // settings.stride)
    people = [a for a in annotations if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
    if people:
        dataset_joints = np.array([a["keypoints"] for a in people], dtype=np.float64).reshape(len(people), -1, 3)
        joints = mapping.convert(dataset_joints)
        joints[..., :2] *= scale
    else:
        joints = np.zeros((0, skeleton.num_keypoints, 3))
    if settings.upsampling_mode == "local":
        heat, paf = perfect_maps(joints, skeleton.limbs, (out_h, out_w), dataclasses.replace(settings, upsampling=1))
        found = decode(heat, paf, skeleton.limbs, settings.decoder, (settings.upsampling, settings.upsampling))
    else:
        heat, paf = perfect_maps(joints, skeleton.limbs, (out_h, out_w), settings)
        found = decode(heat, paf, skeleton.limbs, settings.decoder)
    keypoints = found.keypoints.copy()
    keypoints[..., :2] = ((keypoints[..., :2] + 0.5) * settings.stride / settings.upsampling - 0.5) / scale
    return Prediction(keypoints, found.scores, skeleton)


def run_oracle(
    coco,
    category: Category,
    visibility: VisibilityFlags,
    skeleton: Skeleton,
    settings: OracleSettings = OracleSettings(),
    image_ids: Optional[list] = None,
) -> Dict[str, float]:
    """The ten COCO keypoint stats of the oracle over ``image_ids`` (default: every image) of a ``COCO`` object."""
    mapping = skeleton.mapping_from(category, visibility)
    image_ids = image_ids or sorted(coco.getImgIds())
    detections = []
    for image_id in image_ids:
        info = coco.loadImgs(image_id)[0]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id, catIds=[category.id]))
        prediction = oracle_prediction(annotations, info["height"], info["width"], skeleton, mapping, settings)
        detections += prediction.to_coco(image_id, category.keypoints, category.id)
    return evaluate_keypoints(coco, detections, image_ids)
