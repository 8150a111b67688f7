"""Prediction objects shared by evaluation, inference, video and the Python API, and the files they are
written to (TLT's ``detections.json`` header, atomic JSON, the results folder).

Keypoints are ``(N, K, 3)`` [x, y, score] in the original image's pixels (x right, y down) in the
model skeleton's order; a score of 0 marks a missing keypoint.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from bpnet import spec_loader
from bpnet.errors import BpnetError
from bpnet.files import atomic_path, remove_stale_temporaries
from bpnet.infer import render
from bpnet.skeleton import Skeleton
from bpnet.specs import InferenceSpec


@dataclasses.dataclass
class Prediction:
    """The people found in one image."""

    keypoints: np.ndarray  # (N, K, 3) x, y, score
    scores: np.ndarray  # (N,) person scores
    skeleton: Skeleton
    source: Optional[str] = None  # image path, or a frame label
    track_ids: Optional[np.ndarray] = None  # (N,) int, persistent ids across a video's frames (tracking)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_coco(self, image_id: int, dataset_keypoints: Sequence[str], category_id: int = 1) -> List[Dict]:
        """COCO results (one dict per person) with keypoints reordered to ``dataset_keypoints`` by name.

        Found keypoints get visibility 1, missing ones ``0, 0, 0``; coordinates are not rounded.
        """
        order = [self.skeleton.keypoints.index(n) if n in self.skeleton.keypoints else -1 for n in dataset_keypoints]
        results = []
        for person, score in zip(self.keypoints, self.scores):
            values = np.zeros((len(order), 3))
            for d, k in enumerate(order):
                if k >= 0 and person[k, 2] > 0:
                    values[d] = (person[k, 0], person[k, 1], 1.0)
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_id),
                    "keypoints": [float(v) for v in values.ravel()],
                    "score": float(score),
                }
            )
        return results

    def to_json(self) -> Dict:
        """TLT's per-image ``detections.json`` entry: ``keypoints`` as [[x, y] × K] per person (missing: 0, 0, as TLT
        wrote them) and ``scores`` (one per person), then bpnet's additions: ``keypoint_scores`` (per person, each
        keypoint's confidence, ``null`` for a missing one: the way to tell a missing joint from one at the corner),
        ``boxes`` (per person, ``[x, y, width, height]`` around its found keypoints, in pixels) and, when
        tracked, ``track_ids`` (one per person)."""
        found = self.keypoints[..., 2] > 0
        entry = {
            "keypoints": [[[float(x), float(y)] if s > 0 else [0.0, 0.0] for x, y, s in person] for person in self.keypoints],
            "scores": [float(s) for s in self.scores],
            "keypoint_scores": [[float(s) if s > 0 else None for s in person[:, 2]] for person in self.keypoints],
            "boxes": [keypoint_box(person[mask, :2]) for person, mask in zip(self.keypoints, found)],
        }
        if self.track_ids is not None:
            entry["track_ids"] = [int(i) for i in self.track_ids]
        return entry

    def draw(self, image: np.ndarray, thickness: int = 2, labels: bool = True) -> np.ndarray:
        """A copy of the BGR ``image`` with every person's skeleton and keypoints, and with ``labels`` a label above
        each person: its number (index in ``detections.json``) and score, or, when tracked, ``id <track id>``.
        Untracked people are drawn one colour per limb; tracked people each in their id's colour."""
        drawn = self.keypoints[..., 2] > 0
        if self.track_ids is None:
            out = render.draw_skeletons(image, self.keypoints, drawn, self.skeleton.limbs, thickness)
            names = [f"#{i} {s:.2f}" for i, s in enumerate(self.scores)]
        else:
            colours = [render.identity_colour(int(i)) for i in self.track_ids]
            out = render.draw_skeletons(image, self.keypoints, drawn, self.skeleton.limbs, thickness, colours)
            names = [f"id {int(i)}" for i in self.track_ids]
        return render.draw_labels(out, self.keypoints, drawn, names) if labels else out


def keypoint_box(points: np.ndarray) -> Optional[List[float]]:
    """``[x, y, width, height]`` of the smallest box holding ``points`` (``(M, 2)`` x, y); None without points."""
    if len(points) == 0:
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    return [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]


def tlt_header(skeleton: Skeleton, spec: InferenceSpec) -> Dict:
    """The pose config and inference spec at the top of TLT's ``detections.json``."""
    return {
        "pose_config_type": skeleton.name,
        "categories": [
            {
                "supercategory": "person",
                "id": 1,
                "name": "person",
                "num_joints": skeleton.num_keypoints,
                "keypoints": list(skeleton.keypoints),
                "skeleton": [[a + 1, b + 1] for a, b in skeleton.limbs],
            }
        ],
        "inference_spec": spec_loader.to_dict(spec),
    }


def write_json(path: str, data) -> None:
    """Write ``data`` as JSON at ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def prepare_results_dir(results_dir: str) -> None:
    """Create the results folder (a one-line error if it cannot be) and remove stale temporaries in it."""
    try:
        os.makedirs(results_dir, exist_ok=True)
    except OSError as exc:
        raise BpnetError(f"{results_dir}: cannot create results folder: {exc.strerror or exc}") from None
    remove_stale_temporaries(results_dir)
