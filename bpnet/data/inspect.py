"""``bpnet dataset_inspect``: augmented training samples rendered as PNGs, to check data and augmentation.

Each PNG has two captioned panels at twice the network input size: left, the augmented image with its
keypoints and skeleton, and the regions masked out of the loss shaded red; right, the summed keypoint
heatmaps and the PAF vectors as arrows (one colour per limb). A legend row below names each limb in its
colour.
"""

import itertools
import os
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
from tqdm import tqdm

from bpnet.data.pipeline import Sample, SampleMaker
from bpnet.data.records import read_records
from bpnet.errors import BpnetError
from bpnet.files import write_png
from bpnet.infer import render
from bpnet.skeleton import LABELED_FLAGS
from bpnet.specs import TrainSpec, spec_object, spec_source

DISPLAY_ZOOM = 2
"""Panels are drawn at this multiple of the network input size."""


def render_sample(sample: Sample, maker: SampleMaker) -> np.ndarray:
    """The two-panel BGR uint8 picture of one sample (see the module docstring)."""
    rgb = (sample.image + maker.image_offset) * maker.image_scale
    image = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    height, width = image.shape[:2]
    image = cv2.resize(image, (width * DISPLAY_ZOOM, height * DISPLAY_ZOOM), interpolation=cv2.INTER_NEAREST)
    loss_weight = cv2.resize(sample.mask[..., 0], image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    joints = sample.joints.copy()
    joints[..., :2] = (joints[..., :2] + 0.5) * DISPLAY_ZOOM - 0.5
    drawn = np.isin(joints[..., 2], LABELED_FLAGS)
    left = render.draw_skeletons(render.shade(image, loss_weight < 0.5), joints, drawn, maker.skeleton.limbs)
    keypoint_heat = sample.heatmaps[..., :-1].sum(axis=-1)
    right = render.overlay_heatmap((image * 0.5).astype(np.uint8), keypoint_heat, alpha=0.7)
    right = render.draw_paf_arrows(right, sample.pafs, maker.stride * DISPLAY_ZOOM)
    left = render.draw_title(left, "image, keypoints, loss mask (red: ignored)")
    right = render.draw_title(right, "target heatmaps (sum) and PAFs (arrows)")
    panels = np.concatenate([left, np.full((left.shape[0], 4, 3), 255, np.uint8), right], axis=1)
    return np.concatenate([panels, limb_legend(maker.skeleton, panels.shape[1])], axis=0)


def limb_legend(skeleton, width: int) -> np.ndarray:
    """Rows of ``from-to`` limb names, each in its limb colour, ``width`` pixels wide (BGR uint8)."""
    colours = render.limb_colours(skeleton.num_limbs)
    names = [f"{skeleton.keypoints[a]}-{skeleton.keypoints[b]}" for a, b in skeleton.limbs]
    cell = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] for n in names) + 12 if names else width
    per_row = max(1, width // cell)
    rows = -(-len(names) // per_row) if names else 0
    legend = np.full((rows * 16 + 4, width, 3), 30, np.uint8)
    for index, (name, colour) in enumerate(zip(names, colours)):
        x, y = (index % per_row) * cell + 4, (index // per_row) * 16 + 14
        cv2.putText(legend, name, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return legend


def inspect_dataset(
    train_spec: Union[TrainSpec, str],
    num_samples: int,
    output_dir: str,
    seed: Optional[int] = None,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> List[str]:
    """Write ``num_samples`` augmented samples of the spec's training records as PNGs; returns their paths.

    Records are taken in file order (cycling if there are fewer), sample ``i`` drawn with the
    pipeline's random stream ``i`` for ``seed`` (default: the spec's ``random_seed``).
    """
    train_spec_path = spec_source(train_spec)
    spec = spec_object(TrainSpec, train_spec, overrides)
    maker = SampleMaker.from_train_spec(spec)
    if seed is not None:
        maker.seed = seed
    files = spec.dataloader.dataset_config.train_record_files
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise BpnetError(f"{missing[0]}: TFRecord file not found (dataset_config.train_records_path of {train_spec_path})")
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as exc:
        raise BpnetError(f"{output_dir}: cannot create output folder: {exc.strerror or exc}") from None
    records = itertools.chain.from_iterable(read_records(f) for f in files)
    first = list(itertools.islice(records, num_samples))
    if not first:
        raise BpnetError(f"{files[0]}: no records to inspect")
    written = []
    for index in tqdm(range(num_samples), desc="dataset_inspect", unit="sample", disable=not progress):
        record = first[index % len(first)]
        try:
            sample = maker.make(
                record.image_path,
                record.mask_path,
                record.dataset,
                (record.width, record.height),
                record.joints,
                record.scales,
                record.centers,
                index,
            )
        except (FileNotFoundError, KeyError) as exc:
            raise BpnetError(str(exc).strip("'\"")) from None
        path = os.path.join(output_dir, f"sample_{index:04d}.png")
        write_png(path, render_sample(sample, maker))
        written.append(path)
    return written
