"""A synthetic video of figures walking across a still background, with exact keypoints and identities in
every frame (``bpnet synthesize --video``): ground truth for tracking tests and ``bench/video.py``.

Each figure (drawn as in :mod:`bpnet.synthesize`, in the same colours in every frame) walks along a
horizontal lane at its own constant speed, arms and legs swinging with its stride, and turns back at the
frame's edges. Figures are drawn back to front by the depth of their lane (foot y).

* ``crossings=False``: every figure has a lane of its own, one figure high, so no figure ever covers another.
* ``crossings=True``: figures share lanes in pairs that start at opposite ends and walk towards each
  other, the nearer one a little lower, so they cross and one hides part of the other for a few frames.

Writes ``<output_dir>/video_<split>.avi`` (Motion-JPEG) and
``<output_dir>/annotations/person_keypoints_video_<split>.json``: COCO keypoint annotations as
:func:`bpnet.synthesize.annotate` writes them, one image entry per frame (``frame_index`` from 0 and the
``video`` file name), and a ``track_id`` per person (from 1), as PoseTrack does. Deterministic: the video
is drawn from ``numpy.random.default_rng([seed, ...])`` alone.
"""

import dataclasses
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from bpnet.errors import BpnetError
from bpnet.files import atomic_path
from bpnet.synthesize import (
    Figure,
    Posture,
    Scene,
    annotate,
    background,
    figure_silhouette,
    paint_figure,
    posed,
    silhouette_union,
    write_coco_file,
)

FRAME_SHAPE = (360, 640)
"""(height, width) of the video's frames."""
FPS = 10.0


@dataclasses.dataclass(frozen=True)
class Walker:
    """A figure walking along a lane: ``track_id`` from 1, ``height`` in pixels, foot ``lane_y``, start ``x0``,
    signed ``speed`` in pixels per frame, the gait's starting ``phase``."""

    track_id: int
    height: float
    lane_y: float
    x0: float
    speed: float
    phase: float

    def foot(self, frame: int, width: int) -> Tuple[float, float]:
        """The foot position (x, y) in a frame: the walk folded back at the edges (a margin of 0.15 × height)."""
        margin = 0.15 * self.height
        span = width - 2 * margin
        travelled = (self.x0 - margin + self.speed * frame) % (2 * span)
        return margin + (travelled if travelled <= span else 2 * span - travelled), self.lane_y

    def posture(self, frame: int) -> Posture:
        """The gait: legs and arms swing in opposition once per stride (a stride is 0.8 × height long)."""
        phase = self.phase + 2 * math.pi * abs(self.speed) * frame / (0.8 * self.height)
        swing = math.sin(phase)
        return Posture(
            lean=0.0,
            head_tilt=0.0,
            shoulder=(0.2 - 0.25 * swing, 0.2 + 0.25 * swing),
            elbow=(0.3, 0.3),
            hip=(0.1 + 0.2 * swing, 0.1 - 0.2 * swing),
            knee=(0.35 * max(0.0, math.cos(phase)), 0.35 * max(0.0, -math.cos(phase))),
        )


def walkers(rng: np.random.Generator, count: int, crossings: bool, shape: Tuple[int, int] = FRAME_SHAPE) -> List[Walker]:
    """``count`` walkers in lanes (see the module docstring)."""
    height, width = shape
    lanes = math.ceil(count / 2) if crossings else count
    lane_height = height / lanes
    result = []
    for index in range(count):
        lane = index // 2 if crossings else index
        size = lane_height * (rng.uniform(0.8, 0.88) if crossings else rng.uniform(0.75, 0.9))
        nearer = crossings and index % 2 == 1
        lane_y = (lane + 1) * lane_height - (0.02 if nearer else 0.1) * lane_height
        speed = rng.uniform(3.0, 6.0)
        if crossings:
            x0, direction = (0.1 * width, 1.0) if index % 2 == 0 else (0.9 * width, -1.0)
        else:
            x0, direction = rng.uniform(0.15, 0.85) * width, rng.choice([-1.0, 1.0])
        result.append(Walker(index + 1, size, lane_y, x0, direction * speed, rng.uniform(0, 2 * math.pi)))
    return result


def render_frame(backdrop: np.ndarray, people: List[Walker], frame: int, seed: int) -> Scene:
    """Frame ``frame``: the walkers drawn back to front on a copy of ``backdrop``, each in its own colours."""
    image = backdrop.copy()
    shape = image.shape[:2]
    figures: List[Figure] = []
    for walker in sorted(people, key=lambda w: w.lane_y):
        points = posed(walker.posture(frame), walker.height, walker.foot(frame, shape[1]))
        parts = figure_silhouette(points, walker.height, shape)
        paint_figure(image, np.random.default_rng([seed, 1, walker.track_id]), parts)
        silhouette = silhouette_union(parts)
        for earlier in figures:
            earlier.visible[silhouette] = False
        figures.append(Figure(points, silhouette, silhouette.copy(), labeled=True, track_id=walker.track_id))
    return Scene(image, figures, np.zeros(shape, bool))


@dataclasses.dataclass(frozen=True)
class VideoSummary:
    frames: int
    tracks: int
    annotations: int
    video: str
    annotation_file: str

    def line(self) -> str:
        return (
            f"{self.frames} frames, {self.tracks} people, {self.annotations} person annotations; "
            f"video {self.video}, annotations {self.annotation_file}"
        )


def synthesize_video(
    output_dir: str,
    num_frames: int,
    seed: int,
    split: str = "val",
    num_people: int = 4,
    crossings: bool = True,
    progress: Optional[Callable[[int], None]] = None,
) -> VideoSummary:
    """Write the video and its annotations (see the module docstring); both are written under temporary names
    and renamed when complete."""
    if num_people < 1:
        raise BpnetError(f"--num_people: must be at least 1, got {num_people}")
    rng = np.random.default_rng([seed, 0])
    backdrop = background(rng, FRAME_SHAPE)
    people = walkers(rng, num_people, crossings)
    video = Path(output_dir) / f"video_{split}.avi"
    annotation_file = Path(output_dir) / "annotations" / f"person_keypoints_video_{split}.json"
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    images: List[Dict] = []
    annotations: List[Dict] = []
    with atomic_path(str(video)) as temporary:
        writer = cv2.VideoWriter(temporary, cv2.VideoWriter.fourcc(*"MJPG"), FPS, FRAME_SHAPE[::-1])
        if not writer.isOpened():
            raise BpnetError(f"{video}: cannot write the video")
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
        try:
            for frame in range(num_frames):
                scene = render_frame(backdrop, people, frame, seed)
                writer.write(scene.image)
                image_id = frame + 1
                images.append(
                    {
                        "id": image_id,
                        "file_name": f"{video.name}#{frame}",
                        "video": video.name,
                        "frame_index": frame,
                        "height": FRAME_SHAPE[0],
                        "width": FRAME_SHAPE[1],
                    }
                )
                for annotation in annotate(scene):
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **annotation})
                if progress:
                    progress(1)
        finally:
            writer.release()
    info = {"description": f"bpnet synthetic walking figures, seed {seed}, crossings {crossings}", "fps": FPS}
    write_coco_file(str(annotation_file), info, images, annotations)
    return VideoSummary(num_frames, len(people), len(annotations), str(video), str(annotation_file))
