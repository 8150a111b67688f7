"""Pose tracking: persistent person ids across the frames of a video (``bpnet inference --track``,
:meth:`bpnet.infer.predict.Predictor.track`).

Each frame's people are matched to the live tracks by object keypoint similarity (OKS) and an optimal
one-to-one assignment (the Hungarian method, ``scipy.optimize.linear_sum_assignment``):

* a track's keypoints are those of its last match, moved into the new frame by sparse optical flow
  (pyramidal Lucas–Kanade on the grey frames) when ``optical_flow`` is on, else at the track's last
  velocity (the mean keypoint displacement between its last two matches), so that a person who moved,
  or was missed for a few frames, is found again where they went; keypoints the flow loses stay put;
* ``OKS(track, person) = Σ exp(−d² / (2 s² κ²)) / (keypoints of the track)``, the sum over the keypoints
  found in both (as COCO's OKS, which divides by the true person's labeled keypoints, so that a fragment of
  a person cannot take their track from the rest of them), ``d`` the distance
  in pixels, ``s²`` the area of the track's keypoint box (at least a quarter of its longer side squared, so
  that a person seen as a line still has a scale), ``κ`` :attr:`TrackerSettings.keypoint_tolerance`
  for every keypoint (any skeleton; COCO's per-keypoint constants are 0.05–0.21);
* pairs below :attr:`TrackerSettings.min_similarity` are never matched; a person left unmatched starts a
  new track with the next id (ids count from 1 and are never reused);
* a track unmatched for more than :attr:`TrackerSettings.max_gap` consecutive processed frames is retired.

Keypoints are ``(N, K, 3)`` [x, y, score] in image pixels (x right, y down), score 0 for a missing one.
"""

import dataclasses
from typing import List, Optional

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class TrackerSettings:
    min_similarity: float = 0.2  # OKS below which a person never continues a track
    max_gap: int = 10  # processed frames a track may go unmatched before it is retired
    optical_flow: bool = True  # move tracks with Lucas–Kanade flow between frames
    keypoint_tolerance: float = 0.1  # κ of the OKS, the same for every keypoint

    def __post_init__(self) -> None:
        if not 0 <= self.min_similarity <= 1:
            raise ValueError(f"min_similarity must be in [0, 1], got {self.min_similarity}")
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
        if self.keypoint_tolerance <= 0:
            raise ValueError(f"keypoint_tolerance must be positive, got {self.keypoint_tolerance}")


def keypoint_similarity(tracks: np.ndarray, people: np.ndarray, tolerance: float) -> np.ndarray:
    """OKS ``(T, N)`` between ``tracks (T, K, 3)`` and ``people (N, K, 3)`` (see the module docstring); the
    scale is each track's keypoint box area (at least a quarter of its longer side squared, and 1 pixel²)."""
    if len(tracks) == 0 or len(people) == 0:
        return np.zeros((len(tracks), len(people)))
    track_found = tracks[..., 2] > 0
    areas = np.ones(len(tracks))
    for t, (points, found) in enumerate(zip(tracks, track_found)):
        if found.any():
            width, height = points[found, :2].max(0) - points[found, :2].min(0)
            areas[t] = max(float(width * height), 0.25 * float(max(width, height)) ** 2, 1.0)
    shared = track_found[:, None, :] & (people[None, :, :, 2] > 0)  # (T, N, K)
    squared = ((tracks[:, None, :, :2] - people[None, :, :, :2]) ** 2).sum(-1)  # (T, N, K)
    terms = np.exp(-squared / (2.0 * areas[:, None, None] * tolerance**2))
    counts = np.maximum(track_found.sum(-1), 1)[:, None]  # (T, 1)
    return (terms * shared).sum(-1) / counts


@dataclasses.dataclass
class _Track:
    track_id: int
    keypoints: np.ndarray  # (K, 3) where the track is expected in the latest frame (pixels)
    matched: np.ndarray  # (K, 3) the person it was last matched to
    velocity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2))  # pixels per processed frame
    unmatched: int = 0  # consecutive processed frames without a match

    def match(self, person: np.ndarray) -> None:
        """Continue the track with ``person (K, 3)``; keypoints the person lacks keep their expected place."""
        shared = (person[:, 2] > 0) & (self.matched[:, 2] > 0)
        if shared.any():
            self.velocity = (person[shared, :2] - self.matched[shared, :2]).mean(0) / (self.unmatched + 1)
        found = person[:, 2] > 0
        self.keypoints[found] = person[found]
        self.matched = person.copy()
        self.unmatched = 0


class PoseTracker:
    """``PoseTracker(settings).update(keypoints, frame) -> ids (N,)``: call once per processed frame, in order."""

    def __init__(self, settings: TrackerSettings = TrackerSettings()):
        self.settings = settings
        self.tracks: List[_Track] = []
        self.next_id = 1
        self._previous_grey: Optional[np.ndarray] = None

    def _propagate(self, grey: Optional[np.ndarray]) -> None:
        """Move every live track's found keypoints from the previous frame into this one by optical flow."""
        previous, self._previous_grey = self._previous_grey, grey
        if previous is None or grey is None or previous.shape != grey.shape or not self.tracks:
            return
        found = [np.flatnonzero(track.keypoints[:, 2] > 0) for track in self.tracks]
        points = np.concatenate([track.keypoints[k, :2] for track, k in zip(self.tracks, found)]).astype(np.float32)
        if len(points) == 0:
            return
        start_points = points.reshape(-1, 1, 2)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            previous, grey, start_points, start_points.copy(), winSize=(21, 21), maxLevel=3
        )
        moved, status = moved.reshape(-1, 2), status.reshape(-1).astype(bool)
        start = 0
        for track, k in zip(self.tracks, found):
            stop = start + len(k)
            ok = status[start:stop]
            track.keypoints[k[ok], :2] = moved[start:stop][ok]
            start = stop

    def update(self, keypoints: np.ndarray, frame: Optional[np.ndarray] = None) -> np.ndarray:
        """Track ids ``(N,)`` int for this frame's people ``keypoints (N, K, 3)``; ``frame`` (BGR or grey, the
        image they were found in) drives the optical flow and may be omitted when it is off."""
        if self.settings.optical_flow and frame is not None:
            self._propagate(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame)
        else:
            for track in self.tracks:  # constant velocity
                track.keypoints[:, :2] += track.velocity
        people = np.asarray(keypoints, np.float64)
        if people.ndim != 3 or people.shape[-1] != 3:
            raise ValueError(f"keypoints must be (N, K, 3), got shape {people.shape}")
        from scipy.optimize import linear_sum_assignment  # imported here: 0.7 s that the CLI's start-up does not need

        ids = np.zeros(len(people), np.int64)
        matched_tracks = set()
        if self.tracks and len(people):
            similarity = keypoint_similarity(
                np.stack([t.keypoints for t in self.tracks]), people, self.settings.keypoint_tolerance
            )
            rows, cols = linear_sum_assignment(similarity, maximize=True)
            for row, col in zip(rows, cols):
                if similarity[row, col] >= self.settings.min_similarity and similarity[row, col] > 0:
                    track = self.tracks[row]
                    track.match(people[col])
                    ids[col] = track.track_id
                    matched_tracks.add(row)
        for index, track in enumerate(self.tracks):
            if index not in matched_tracks:
                track.unmatched += 1
        self.tracks = [t for t in self.tracks if t.unmatched <= self.settings.max_gap]
        for col in np.flatnonzero(ids == 0):
            ids[col] = self.next_id
            self.tracks.append(_Track(self.next_id, people[col].copy(), people[col].copy()))
            self.next_id += 1
        return ids
