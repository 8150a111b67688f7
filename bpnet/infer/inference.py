"""``bpnet inference``: a Predictor built from an inference spec (:func:`bpnet.infer.predict.load_predictor`),
run over images, a folder, a JSON list or a video; TLT's ``detections.json`` and rendered skeletons.

The model's skeleton and normalisation come from the model file (``bpnet.json`` in a ``.keras``);
for a model without them (for example a TLT ``.hdf5``) they come from the inference spec's train spec.
"""

import collections
import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from bpnet import spec_loader
from bpnet.errors import BpnetError
from bpnet.files import atomic_path, remove_stale_temporaries, write_png
from bpnet.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, check_pixels, load_image
from bpnet.infer.predict import Predictor, load_predictor
from bpnet.infer.results import prepare_results_dir, tlt_header, write_json
from bpnet.infer.stream import predict_stream
from bpnet.infer.track import PoseTracker, TrackerSettings
from bpnet.specs import InferenceSpec, spec_object
from bpnet.status import task_status

logger = logging.getLogger(__name__)


def detect_input_type(source: str, image_root_path: str = "") -> str:
    """``--input_type`` from ``--input`` when it is not given: a folder → ``dir``, a ``.json`` file → ``json``,
    a video file or a camera index (digits) → ``video``, anything else → ``image`` (TLT's default)."""
    if os.path.isdir(os.path.join(image_root_path, source)):
        return "dir"
    if source.isdigit() or source.lower().endswith(VIDEO_EXTENSIONS):
        return "video"
    return "json" if source.lower().endswith(".json") else "image"


def expand_sources(sources: Sequence[str], image_root_path: str = "") -> List[str]:
    """Each ``--input`` as given, or, for a quoted glob pattern (``'photos/*.jpg'``) that names no file itself,
    its matches in name order; a pattern without matches is an error."""
    expanded = []
    for source in sources:
        if glob.has_magic(source) and not os.path.exists(os.path.join(image_root_path, source)):
            matches = sorted(glob.glob(os.path.join(image_root_path, source)))
            if not matches:
                raise BpnetError(f"{source}: no file matches the pattern (--input)")
            expanded += [os.path.relpath(m, image_root_path) if image_root_path else m for m in matches]
        else:
            expanded.append(source)
    return expanded


def resolve_inputs(
    input_type: Optional[str], sources: Sequence[str], image_root_path: str
) -> Tuple[str, List[str], List[Tuple[str, Dict]]]:
    """``(input type, sources with globs expanded, image inputs)`` of one or more ``--input`` values, checked before
    any model work: a video (one source) has no image inputs; images, folders and JSON lists may be mixed, each of
    its detected type unless ``input_type`` is given (the type is then ``mixed``)."""
    sources = expand_sources(sources, image_root_path)
    types = [input_type or detect_input_type(source, image_root_path) for source in sources]
    if "video" in types:
        if len(sources) > 1:
            raise BpnetError(f"--input: one video at a time ({len(sources)} inputs given: {', '.join(sources[:3])}...)")
        source = sources[0]
        if not source.isdigit() and not os.path.isfile(source):
            raise BpnetError(f"{source}: cannot open the video: file not found (--input)")
        return "video", sources, []
    inputs = [entry for kind, source in zip(types, sources) for entry in _inputs(kind, source, image_root_path)]
    return (types[0] if len(set(types)) == 1 else "mixed"), sources, inputs


def _inputs(input_type: str, source: str, image_root_path: str) -> List[Tuple[str, Dict]]:
    """``(image path, extra keys)`` per input; the extra keys of a JSON ``images`` entry are copied into its
    ``detections.json`` entry, as TLT did."""
    if input_type == "image":
        path = os.path.join(image_root_path, source)
        if not os.path.isfile(path):
            raise BpnetError(f"{path}: input image not found (--input)")
        return [(path, {})]
    if input_type == "dir":
        if not os.path.isdir(source):
            raise BpnetError(f"{source}: input folder not found")
        paths = sorted(os.path.join(source, n) for n in os.listdir(source) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise BpnetError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the input folder")
        return [(path, {}) for path in paths]
    try:
        with open(source, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BpnetError(f"{source}: cannot read the input JSON: {exc}") from None
    if isinstance(data, list):
        entries = [{"full_image_path": e} for e in data]
    else:
        entries = data.get("images", []) if isinstance(data, dict) else []
    if not entries or not all(isinstance(e, dict) and isinstance(e.get("full_image_path"), str) for e in entries):
        raise BpnetError(f"{source}: expected a list of image paths or {{images: [{{full_image_path: ...}}]}}")
    reserved = {"full_image_path", "viz_id", "keypoints", "scores", "keypoint_scores", "boxes", "track_ids"}
    return [
        (os.path.join(image_root_path, e["full_image_path"]), {k: v for k, v in e.items() if k not in reserved}) for e in entries
    ]


def rendering_names(paths: Sequence[str], numbered: bool) -> List[str]:
    """File names of the renderings: ``<input stem>.png`` (``<stem>_<index>.png`` where two inputs share a
    stem), or TLT's ``<index>.png`` when ``numbered``."""
    if numbered:
        return [f"{index}.png" for index in range(len(paths))]
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    counts = collections.Counter(stems)
    return [f"{stem}.png" if counts[stem] == 1 else f"{stem}_{index}.png" for index, stem in enumerate(stems)]


@dataclasses.dataclass
class VideoFrames:
    """A video's frames: :attr:`frames` yields ``(frame index, BGR frame)`` of every ``stride``-th frame among the
    first ``max_frames`` (default all); :attr:`partial` is set once they are read when the video ended before
    the frame count its header reports (a truncated or corrupt file)."""

    frames: Iterator[Tuple[int, np.ndarray]]
    fps: float
    name: str
    total: Optional[int]  # frames that will be yielded, when the video reports its length
    partial: Optional[str] = None


PARTIAL_VIDEO_TOLERANCE = 1
"""Frames a video may fall short of its header's count without being reported (containers estimate it)."""


def open_video(source: str, max_frames: Optional[int], stride_frames: int = 1) -> VideoFrames:
    """Open a video file or camera; its frame size is checked against the pixel budget before any is decoded."""
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise BpnetError(f"{source}: cannot open the video (file or camera index)")
    check_pixels(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), source, "video frame")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    read = min(reported, max_frames) if reported > 0 and max_frames else (reported or max_frames or None)
    name = f"camera{source}" if source.isdigit() else os.path.splitext(os.path.basename(source))[0]
    video = VideoFrames(iter(()), fps / stride_frames, name, -(-read // stride_frames) if read else None)

    def frames() -> Iterator[Tuple[int, np.ndarray]]:
        index = 0
        try:
            while max_frames is None or index < max_frames:
                if index % stride_frames:
                    if not capture.grab():  # skipped frames are not decoded
                        break
                else:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    check_pixels(frame.shape[1], frame.shape[0], f"{source}: frame {index}", "video frame")
                    yield index, frame
                index += 1
        finally:
            capture.release()
        expected = min(reported, max_frames) if max_frames else reported
        if reported > 0 and index < expected - PARTIAL_VIDEO_TOLERANCE:
            video.partial = f"read {index} of the {reported} frames its header reports (truncated or corrupt)"

    video.frames = frames()
    return video


def _video_inference(
    predictor: Predictor,
    source: str,
    annotated: str,
    dump_visualizations: bool,
    progress: bool,
    max_frames: Optional[int] = None,
    stride_frames: int = 1,
    tracker: Optional[PoseTracker] = None,
    pipelined: bool = True,
) -> Tuple[List[Dict], bool]:
    """Per-frame entries of a video (with ``track_ids`` when a ``tracker`` is given), and whether the video ended
    before the frame count its header reports (warned); the rendered video is
    written under a temporary name and renamed when complete, so an interrupted run never leaves a truncated
    ``.mp4`` under the final name."""
    video = open_video(source, max_frames, stride_frames)
    entries: List[Dict] = []
    video_path = os.path.join(annotated, f"{video.name}.mp4")
    with contextlib.ExitStack() as stack:
        writer = None
        results = stack.enter_context(contextlib.closing(predict_stream(predictor, video.frames, pipelined, tracker)))
        for index, frame, prediction in tqdm(results, desc="inference", unit="frame", total=video.total, disable=not progress):
            assert frame is not None and prediction is not None
            entries.append({"frame": index, **prediction.to_json()})
            if not dump_visualizations:
                continue
            if writer is None:
                os.makedirs(annotated, exist_ok=True)
                temporary = stack.enter_context(atomic_path(video_path))
                writer = cv2.VideoWriter(temporary, cv2.VideoWriter.fourcc(*"mp4v"), video.fps, frame.shape[1::-1])
                if not writer.isOpened():
                    raise BpnetError(f"{video_path}: cannot write the video")
                stack.callback(writer.release)
            writer.write(prediction.draw(frame))
    if not entries:
        raise BpnetError(f"{source}: the video has no readable frame")
    if video.partial:
        logger.warning("%s: %s", source, video.partial)
    return entries, bool(video.partial)


PIPELINE_MIN_CORES = 3
"""On 2 cores the network alone keeps both busy: threads gained nothing with ONNX Runtime and cost 11 % with
OpenVINO (docs/benchmarks.md), so the automatic choice pipelines only from 3 cores."""

JOURNAL_NAME = "detections.partial.jsonl"
"""Per-image results of an unfinished ``inference`` run, appended as each image is done; a rerun with the
same inputs, model and spec resumes from it, a different one starts afresh. Removed when
``detections.json`` is complete."""


def _run_fingerprint(
    inputs: Sequence[Tuple[str, Dict]], model_path: str, spec: InferenceSpec, renderings: Optional[Sequence[str]]
) -> str:
    model = os.path.abspath(model_path)
    stat = os.stat(model) if os.path.isfile(model) else None
    identity = {
        "inputs": list(inputs),
        "model": model,
        "model_size": stat.st_size if stat else None,
        "model_mtime_ns": stat.st_mtime_ns if stat else None,
        "spec": spec_loader.to_dict(spec),
        "renderings": list(renderings) if renderings else None,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def file_identity(path: str) -> Optional[List[int]]:
    """``[size, mtime in ns]`` of a file (None when it cannot be read): what tells a resumed run that an input
    was replaced since an interrupted run did it."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


@dataclasses.dataclass(frozen=True)
class JournalRecord:
    """One finished input: its ``detections.json`` entry, or why it was skipped; the input file's identity when
    it was done, and whether it was partial (a truncated image)."""

    entry: Optional[Dict]
    identity: Optional[List[int]]
    partial: bool = False
    skipped: Optional[str] = None


class _Journal:
    """``detections.partial.jsonl``: a fingerprint line, then one ``{"index", "identity", "entry" | "skipped",
    "partial"}`` line per image."""

    def __init__(self, path: str, fingerprint: str):
        self.path = path
        self.done: Dict[int, JournalRecord] = {}
        self._read(fingerprint)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        self.handle = os.fdopen(os.open(path, flags, 0o644), "a", encoding="utf-8")
        if not self.done and self.handle.tell() == 0:
            self._append({"fingerprint": fingerprint})

    def _read(self, fingerprint: str) -> None:
        if not os.path.isfile(self.path) or os.path.islink(self.path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            return
        with open(self.path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        good = 0
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
                if number == 0 and record["fingerprint"] != fingerprint:
                    break
                if number > 0:
                    skipped = record.get("skipped")
                    done = JournalRecord(record.get("entry"), record["identity"], bool(record.get("partial")), skipped)
                    self.done[int(record["index"])] = done
            except (ValueError, KeyError, TypeError):
                break  # the last line of a killed run may be cut short
            good += len(line) + 1
        if good == 0:
            self.done.clear()
            os.remove(self.path)
            return
        with open(self.path, "r+", encoding="utf-8") as handle:
            handle.truncate(good)

    def _append(self, record: Dict) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def add(self, index: int, done: JournalRecord) -> None:
        outcome = {"entry": done.entry} if done.entry is not None else {"skipped": done.skipped or "unreadable"}
        self._append({"index": index, "identity": done.identity, "partial": done.partial, **outcome})
        self.done[index] = done

    def close(self) -> None:
        self.handle.close()


@dataclasses.dataclass(frozen=True)
class ImageOutcome:
    """The ``detections.json`` entries of an image run, and how many inputs were skipped and partial."""

    entries: List[Dict]
    skipped: int
    partial: int
    first_problem: List[str]  # why the first skipped image was skipped (none skipped: empty)


def _image_inference(
    predictor: Predictor,
    inputs: Sequence[Tuple[str, Dict]],
    results_dir: str,
    annotated: str,
    renderings: Optional[Sequence[str]],
    fingerprint: str,
    progress: bool,
    pipelined: bool = True,
) -> ImageOutcome:
    """Per-image entries, resuming from and appending to the journal (an input whose size or modification time
    changed since it was journaled is done again); each image is rendered to ``annotated/renderings[i]``
    when ``renderings`` is given. Unreadable images are skipped and truncated ones kept, each with a warning."""
    paths = [path for path, _ in inputs]
    journal = _Journal(os.path.join(results_dir, JOURNAL_NAME), fingerprint)
    changed = [i for i, done in journal.done.items() if done.identity != file_identity(paths[i])]
    for index in changed:
        del journal.done[index]
    identities: Dict[int, Optional[List[int]]] = {}
    partial: Dict[int, bool] = {}
    problems: Dict[int, str] = {}

    def images() -> Iterator[Tuple[int, Optional[np.ndarray]]]:
        for index, path in enumerate(paths):
            if index in journal.done:
                continue
            identities[index] = file_identity(path)
            try:
                loaded = load_image(path)
            except BpnetError as exc:
                logger.warning("skipped: %s", exc)
                problems[index] = str(exc)
                yield index, None
                continue
            partial[index] = loaded.partial is not None
            if loaded.partial:
                logger.warning("partial: %s: %s", path, loaded.partial)
            yield index, loaded.image

    try:
        if journal.done or changed:
            logger.info(
                "Resuming: %d of %d images were done by an interrupted run%s",
                len(journal.done),
                len(paths),
                f"; {len(changed)} changed since and are done again" if changed else "",
            )
        bar = tqdm(total=len(paths), desc="inference", unit="img", disable=not progress, initial=len(journal.done))
        with bar, contextlib.closing(predict_stream(predictor, images(), pipelined)) as results:
            for index, image, prediction in results:
                bar.update()
                if image is None or prediction is None:
                    journal.add(index, JournalRecord(None, identities[index], skipped=problems.get(index)))
                    continue
                if renderings:
                    write_png(os.path.join(annotated, renderings[index]), prediction.draw(image))
                entry = {**inputs[index][1], "full_image_path": paths[index], "viz_id": index, **prediction.to_json()}
                journal.add(index, JournalRecord(entry, identities[index], partial[index]))
    finally:
        journal.close()
    finished = [journal.done[i] for i in range(len(paths)) if i in journal.done]
    entries = [done.entry for done in finished if done.entry is not None]
    skipped = [done.skipped for done in finished if done.entry is None and done.skipped]
    return ImageOutcome(entries, len(paths) - len(entries), sum(done.partial for done in finished), skipped[:1])


def inference(
    inference_spec: Union[InferenceSpec, str, None],
    input_type: Optional[str],
    source: Union[str, Sequence[str]],
    results_dir: str,
    model_path: Optional[str] = None,
    image_root_path: str = "",
    dump_visualizations: bool = False,
    progress: bool = True,
    overrides: Sequence[str] = (),
    numbered_outputs: bool = False,
    max_frames: Optional[int] = None,
    stride_frames: int = 1,
    tracking: Optional[TrackerSettings] = None,
    pipelined: Optional[bool] = None,
) -> Dict[str, int]:
    """Predict images, a folder, a JSON list or a video; writes ``detections.json`` and, optionally, renders
    (``images_annotated/<input stem>.png``, or TLT's ``<index>.png`` with ``numbered_outputs``).

    Image inputs are journaled per image (:data:`JOURNAL_NAME`): an interrupted run, rerun, resumes.
    A video (every ``stride_frames``-th of at most ``max_frames`` frames; ``detections.json`` keeps the
    frame indices of the video) is processed again from its first frame; with ``tracking``, its people get
    persistent ``track_ids`` (:mod:`bpnet.infer.track`). ``source``: one input or several (:func:`resolve_inputs`;
    quoted glob patterns expand); ``input_type`` None: detected per input (:func:`detect_input_type`); the inputs
    are checked before the model loads. Reading, the network and decoding overlap in threads
    (:mod:`bpnet.infer.stream`) when ``pipelined`` is True, or, when it is None, on machines with more than
    :data:`PIPELINE_MIN_CORES` - 1 cores; the results are the same either way.
    """
    if pipelined is None:
        pipelined = (os.cpu_count() or 1) >= PIPELINE_MIN_CORES
    prepare_results_dir(results_dir)
    with task_status(results_dir, "Starting bpnet inference.") as status:
        if inference_spec is not None:
            spec_object(InferenceSpec, inference_spec, overrides)  # a bad spec is reported before the inputs
        given = [source] if isinstance(source, str) else list(source)
        input_type, sources, inputs = resolve_inputs(input_type, given, image_root_path)
        if tracking is not None and input_type != "video":
            raise BpnetError(f"--track: tracking needs consecutive frames (--input_type video), not --input_type {input_type}")
        source = sources[0] if len(sources) == 1 else f"{len(sources)} inputs"
        predictor, spec = load_predictor(inference_spec, model_path, overrides)
        annotated = os.path.join(results_dir, "images_annotated")
        remove_stale_temporaries(annotated)
        if input_type == "video":
            tracker = PoseTracker(tracking) if tracking is not None else None
            entries, video_partial = _video_inference(
                predictor, source, annotated, dump_visualizations, progress, max_frames, stride_frames, tracker, pipelined
            )
            skipped, partial = 0, int(video_partial)
        else:
            renderings = rendering_names([p for p, _ in inputs], numbered_outputs) if dump_visualizations else None
            fingerprint = _run_fingerprint(inputs, spec.model_path or "", spec, renderings)
            outcome = _image_inference(predictor, inputs, results_dir, annotated, renderings, fingerprint, progress, pipelined)
            entries, skipped, partial = outcome.entries, outcome.skipped, outcome.partial
            if not entries:
                raise BpnetError(f"{source}: no readable image" + "".join(f" ({why})" for why in outcome.first_problem))
        write_json(os.path.join(results_dir, "detections.json"), {**tlt_header(predictor.info.skeleton, spec), "images": entries})
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(results_dir, JOURNAL_NAME))
        summary = {
            "inputs": len(entries),
            "skipped": skipped,
            "inputs_partial": partial,
            "people": sum(len(e["scores"]) for e in entries),
        }
        if tracking is not None:
            summary["tracks"] = len({i for e in entries for i in e["track_ids"]})
        status.write("SUCCESS", "Inference finished successfully.", kpi=summary)
    return summary
