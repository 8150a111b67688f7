"""Pipelined prediction over a stream of images (video frames, a folder): reading and decoding the files,
the network, and the people decoding (with tracking) run in three threads joined by bounded queues, while
the caller renders and writes; each stage handles its items in order, so results come out in input order.

ONNX Runtime, OpenVINO, OpenCV and most of numpy release the GIL, so the stages overlap on several cores
(the network keeps its own thread pool; see ``docs/video.md`` for the figures). An exception in any stage
stops the others and is raised in the caller; so is Ctrl-C, and closing the generator early stops and joins
the threads (their queues are bounded, so at most a few items are read ahead and dropped).
"""

import queue
import threading
from typing import Any, Callable, Generator, Iterable, Iterator, List, Optional, Protocol, Tuple, TypeVar

import numpy as np

from bpnet.infer.results import Prediction
from bpnet.infer.track import PoseTracker

Key = TypeVar("Key")
QUEUE_DEPTH = 4
"""Items each queue holds: enough to absorb the stages' jitter, few enough to bound memory (frames)."""
_POLL_S = 0.1
_END = object()


class MapsPredictor(Protocol):
    """What the stream needs of a :class:`bpnet.infer.predict.Predictor`: the network half and the decoding half
    of a prediction, which run in different threads."""

    def decoder_maps(self, image: np.ndarray) -> Any: ...

    def decode_maps(self, maps: Any, source: Optional[str] = None) -> Prediction: ...


class _Failure:
    """An exception raised in a stage, passed downstream to the caller."""

    def __init__(self, error: BaseException):
        self.error = error


class _Stage:
    """One thread: items from ``source`` (an iterator, or the previous stage's queue) through ``function`` into
    its own bounded queue; failures and the end marker are passed on."""

    def __init__(self, source: Any, function: Callable[[Any], Any], stop: threading.Event, name: str):
        self.source, self.function, self.stop = source, function, stop
        self.out: "queue.Queue[Any]" = queue.Queue(QUEUE_DEPTH)
        self.thread = threading.Thread(target=self._run, name=f"bpnet-{name}", daemon=True)

    def _items(self) -> Iterator[Any]:
        if not isinstance(self.source, queue.Queue):
            yield from self.source
            return
        while not self.stop.is_set():
            try:
                item = self.source.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item

    def put(self, item: Any) -> bool:
        """Put ``item`` on the output queue, waiting for room; False when the pipeline was stopped meanwhile."""
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        items = self._items()
        try:
            for item in items:
                result = item if isinstance(item, _Failure) else self.function(item)
                if not self.put(result) or isinstance(result, _Failure):
                    return
            self.put(_END)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            self.put(_Failure(exc))
        finally:
            close = getattr(self.source, "close", None)
            if close is not None and not isinstance(self.source, queue.Queue):
                close()  # a generator's finally (releasing a video) runs in the thread that iterated it


def _pipelined(stages: List[_Stage], stop: threading.Event) -> Iterator[Any]:
    for stage in stages:
        stage.thread.start()
    last = stages[-1].out
    try:
        while True:
            try:
                item = last.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        for stage in stages:
            stage.thread.join()


def predict_stream(
    predictor: MapsPredictor,
    images: Iterable[Tuple[Key, Optional[np.ndarray]]],
    pipelined: bool = True,
    tracker: Optional[PoseTracker] = None,
) -> Generator[Tuple[Key, Optional[np.ndarray], Optional[Prediction]], None, None]:
    """``(key, image, prediction)`` for each ``(key, BGR image)`` of ``images``, in order; an image of None (one
    that could not be read) gives a prediction of None. With a ``tracker``, predictions carry ``track_ids``.
    The ``images`` iterable is consumed in a reader thread when ``pipelined``."""

    def network(item: Tuple[Key, Optional[np.ndarray]]) -> Tuple[Key, Optional[np.ndarray], Any]:
        key, image = item
        return key, image, None if image is None else predictor.decoder_maps(image)

    def people(item: Tuple[Key, Optional[np.ndarray], Any]) -> Tuple[Key, Optional[np.ndarray], Optional[Prediction]]:
        key, image, maps = item
        if maps is None:
            return key, image, None
        prediction = predictor.decode_maps(maps, None if key is None else str(key))
        if tracker is not None:
            prediction.track_ids = tracker.update(prediction.keypoints, image)
        return key, image, prediction

    if not pipelined:
        for item in images:
            yield people(network(item))
        return
    stop = threading.Event()
    reader = _Stage(iter(images), lambda item: item, stop, "read")
    runner = _Stage(reader.out, network, stop, "network")
    decoder = _Stage(runner.out, people, stop, "decode")
    yield from _pipelined([reader, runner, decoder], stop)
