"""``SamAutomaticMaskGenerator``: the official generator's API on samrt's model."""

import math

import numpy as np

from . import _args, _samrt
from .predictor import SamPredictor

_OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class SamAutomaticMaskGenerator:
    """Segments everything: a grid of point prompts over the image (and over crops of it),
    filtered by predicted IoU and stability, de-duplicated by NMS, as
    ``segment_anything.SamAutomaticMaskGenerator`` with the same arguments and defaults.

    ``generate`` returns the official records. ``coco_rle`` needs no pycocotools and
    ``min_mask_region_area`` no OpenCV: both are built in.
    """

    def __init__(
        self,
        model,
        points_per_side=32,
        points_per_batch=64,
        pred_iou_thresh=0.88,
        stability_score_thresh=0.95,
        stability_score_offset=1.0,
        box_nms_thresh=0.7,
        crop_n_layers=0,
        crop_nms_thresh=0.7,
        crop_overlap_ratio=512 / 1500,
        crop_n_points_downscale_factor=1,
        point_grids=None,
        min_mask_region_area=0,
        output_mode="binary_mask",
    ):
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Exactly one of points_per_side or point_grid must be provided.")
        if output_mode not in _OUTPUT_MODES:
            raise ValueError(f"Unknown output_mode {output_mode}.")
        if points_per_side is not None:
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = list(point_grids)
        self.predictor = SamPredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    def generate(self, image):
        """Masks for the whole HxWx3 uint8 image: a list of dicts with ``segmentation``
        (HxW bool array, or an RLE dict per ``output_mode``), ``area``, ``bbox`` (XYWH),
        ``predicted_iou``, ``point_coords``, ``stability_score`` and ``crop_box`` (XYWH), in
        the official order. Runs with the GIL released."""
        if self.output_mode not in _OUTPUT_MODES:
            raise ValueError(f"Unknown output_mode {self.output_mode}.")
        grids = [_grid(g, i) for i, g in enumerate(self.point_grids)]
        return _samrt.generate(
            self.predictor.model._core,
            _args.image(image),
            grids,
            self.points_per_batch,
            self.pred_iou_thresh,
            self.stability_score_thresh,
            self.stability_score_offset,
            self.box_nms_thresh,
            self.crop_n_layers,
            self.crop_nms_thresh,
            self.crop_overlap_ratio,
            _area(self.min_mask_region_area),
            self.output_mode,
        )


def _grid(g, i):
    a = _args.numeric(g, f"point_grids[{i}]").astype(np.float64, copy=False)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"point_grids[{i}] must have shape (N, 2), got {a.shape}")
    return np.ascontiguousarray(a)


def _area(v):
    """The official threshold compares ``region size < v``; for integer sizes that is
    ``size < ceil(v)``, so a float threshold becomes that integer."""
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"min_mask_region_area must be finite, got {v}")
    return max(0, math.ceil(v))


def build_point_grid(n_per_side):
    """``n_per_side``² points (x, y) at the centres of an even grid over [0, 1]², rows of
    constant y in order: the official layout (``np.linspace`` values, bit for bit)."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side, n_layers, scale_per_layer):
    """One grid per crop layer, layer i with ``int(n_per_side / scale_per_layer**i)`` points
    per side. The total over all crops is bounded first, so an absurd setting is a
    ValueError rather than an allocation the machine cannot make."""
    n_per_side, n_layers = int(n_per_side), int(n_layers)
    if n_layers > 0 and not scale_per_layer > 0:
        raise ValueError(
            f"crop_n_points_downscale_factor must be positive, got {scale_per_layer}"
        )
    sides = []
    total = 0
    for i in range(max(n_layers, 0) + 1):
        n = int(n_per_side / (scale_per_layer**i))
        if n < 1:
            raise ValueError(
                f"crop layer {i} gets {n} points per side (points_per_side {n_per_side} / "
                f"crop_n_points_downscale_factor {scale_per_layer}^{i})"
            )
        total += 4**i * n * n
        if total > _samrt.MAX_PROMPTS_PER_IMAGE:
            raise ValueError(
                f"points_per_side {n_per_side} with crop_n_layers {n_layers} means more than "
                f"{_samrt.MAX_PROMPTS_PER_IMAGE} point prompts per image (over all crops)"
            )
        sides.append(n)
    return [build_point_grid(n) for n in sides]
