#!/usr/bin/env python3
"""Build tests/fixtures/amg/: records of the official SamAutomaticMaskGenerator on the fixture
model (tests/fixtures/sam_tiny.pth, built as tools/make_fixtures.py builds it).

Random weights give masks of random quality, so the official default thresholds would keep
nothing. Each case therefore picks its pred_iou_thresh / stability_score_thresh from the
values the official run actually produces: a threshold is put in the middle of the widest gap
between observed values near a target quantile, so no mask sits within float rounding of a
threshold (the Rust port matches to f32 rounding, not bit for bit, in the encoder).

torch runs with 2 threads: with one thread PyTorch's bilinear upsampling of the [B, 3, 256,
256] logits switches kernel (see src/postprocess.rs); samrt reproduces the multi-thread one.

Run: `python3 tools/make_amg_fixtures.py` from anywhere. Needs torch, torchvision,
segment_anything, pycocotools, opencv-python-headless, Pillow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import make_fixtures  # noqa: E402  (build_tiny_sam; its torchvision shim is a no-op here)

import segment_anything.automatic_mask_generator as amg_mod  # noqa: E402
from segment_anything import SamAutomaticMaskGenerator  # noqa: E402
from segment_anything.utils.amg import rle_to_mask  # noqa: E402

FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "amg"

CASES = [
    # name, image, generator kwargs, (iou quantile, stability quantile) for the thresholds
    dict(name="chelsea_coco", image="chelsea.png", output_mode="coco_rle", q=(0.75, 0.5),
         # box_nms_thresh 1.0: random-weight masks nearly all span the image, so box NMS
         # would leave one record; the crop case below exercises NMS.
         kw=dict(points_per_side=12, points_per_batch=64, box_nms_thresh=1.0,
                 stability_score_offset=0.05)),
    dict(name="coffee_crops_regions", image="coffee.png", output_mode="uncompressed_rle",
         q=(0.75, 0.5),
         kw=dict(stability_score_offset=0.05, points_per_side=8, points_per_batch=20, crop_n_layers=1,
                 crop_n_points_downscale_factor=2, min_mask_region_area=200)),
    # NMS off (1.0) so masks from the four layer-1 crops survive to the records: exercises
    # crop embedding, point scaling, the crop-edge filter, un-cropping and small regions.
    dict(name="coffee_crops_no_nms", image="coffee.png", output_mode="uncompressed_rle",
         q=(0.75, 0.5),
         kw=dict(stability_score_offset=0.05, points_per_side=6, points_per_batch=16,
                 crop_n_layers=1, box_nms_thresh=1.0, crop_nms_thresh=1.0,
                 min_mask_region_area=300)),
]


def load_model():
    sam = make_fixtures.build_tiny_sam()
    sd = torch.load(FIX / "sam_tiny.pth", map_location="cpu", weights_only=True)
    sam.load_state_dict(sd, strict=True)
    sam.eval()
    return sam


def observe(sam, image, kw):
    """IoU predictions and stability scores the official run filters on."""
    ious, stabs = [], []
    orig_stab = amg_mod.calculate_stability_score

    def stab_hook(*a):
        s = orig_stab(*a)
        stabs.extend(s.tolist())
        return s

    gen = SamAutomaticMaskGenerator(sam, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                    output_mode="uncompressed_rle", **kw)
    orig_pred = gen.predictor.predict_torch

    def pred_hook(*a, **k):
        out = orig_pred(*a, **k)
        ious.extend(out[1].flatten().tolist())
        return out

    gen.predictor.predict_torch = pred_hook
    amg_mod.calculate_stability_score = stab_hook
    try:
        gen.generate(image)
    finally:
        amg_mod.calculate_stability_score = orig_stab
    return np.array(ious), np.array([s for s in stabs if s == s])


# A synthetic case: the official generator with its predictor replaced by closed-form masks,
# so every mask is a small localised disc and the crop machinery (inner-crop edges, point
# scaling, un-cropping, cross-crop NMS) and the small-region pass are exercised with masks
# that survive them, which random-weight model masks never do. tests/amg.rs computes the
# same masks in Rust (same float64 operations, then one rounding to float32), so records must
# match exactly. Radii are in the 1024 input frame, where the points arrive.
SYN_NAME = "synthetic_discs"
SYN_SIZE = (400, 600)  # h, w of the (blank) image: only its shape reaches the predictor
SYN_RADII = (12.0, 30.0, 70.0)
SYN_KW = dict(points_per_side=8, points_per_batch=16, crop_n_layers=1,
              min_mask_region_area=50)


def synthetic_logits(h, w, sx, sy, px, py):
    """[3, h, w] float32: 10 * (r - distance to the point), in the 1024 frame. Mask 1 gets a
    radius-4 island 45 units right of the point, mask 2 a radius-5 hole 30 units left."""
    x = np.arange(w, dtype=np.float64) * sx
    y = np.arange(h, dtype=np.float64) * sy
    dx, dy = x[None, :] - px, y[:, None] - py
    d = np.sqrt(dx * dx + dy * dy)
    out = []
    for m, r in enumerate(SYN_RADII):
        v = 10.0 * (r - d)
        if m == 1:
            ex = x[None, :] - (px + 45.0)
            v = np.maximum(v, 10.0 * (4.0 - np.sqrt(ex * ex + dy * dy)))
        if m == 2:
            ex = x[None, :] - (px - 30.0)
            v = np.minimum(v, 10.0 * (np.sqrt(ex * ex + dy * dy) - 5.0))
        out.append(v.astype(np.float32))
    return np.stack(out)


def synthetic_iou(px, py):
    base = ((px * 7.0 + py * 13.0) % 100.0) / 1000.0
    return [np.float32(0.87 + base + 0.01 * m) for m in range(3)]


def synthetic_records():
    gen = SamAutomaticMaskGenerator(load_model(), output_mode="uncompressed_rle", **SYN_KW)
    pred = gen.predictor

    def set_image(image, image_format="RGB"):
        pred.reset_image()
        pred.original_size = image.shape[:2]
        pred.input_size = pred.transform.get_preprocess_shape(*image.shape[:2], 1024)
        pred.is_image_set = True

    def predict_torch(point_coords, point_labels, boxes=None, mask_input=None,
                      multimask_output=True, return_logits=False):
        (h, w), (nh, nw) = pred.original_size, pred.input_size
        pts = point_coords.cpu().numpy().astype(np.float64)[:, 0, :]
        masks = np.stack([synthetic_logits(h, w, nw / w, nh / h, p[0], p[1]) for p in pts])
        ious = np.array([synthetic_iou(p[0], p[1]) for p in pts], dtype=np.float32)
        return torch.from_numpy(masks), torch.from_numpy(ious), None

    pred.set_image, pred.predict_torch = set_image, predict_torch
    return gen.generate(np.zeros((*SYN_SIZE, 3), dtype=np.uint8))


def gap_threshold(values: np.ndarray, q: float) -> float:
    """Middle of the widest gap between sorted values in the quantile window q +- 0.1."""
    v = np.sort(values)
    lo, hi = int(len(v) * max(q - 0.1, 0.0)), int(len(v) * min(q + 0.1, 1.0))
    seg = v[max(lo, 0): max(hi, lo + 2)]
    gaps = np.diff(seg)
    i = int(np.argmax(gaps))
    return float((seg[i] + seg[i + 1]) / 2), float(gaps[i])


def main() -> None:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    sam = load_model()
    only = set(sys.argv[1:])  # optional case names: regenerate just those
    old = json.loads((OUT / "manifest.json").read_text()) if (OUT / "manifest.json").exists() else None
    manifest = {"generator": "tools/make_amg_fixtures.py", "torch_threads": 2,
                "torch": torch.__version__, "cases": []}
    for case in CASES:
        if only and case["name"] not in only:
            kept = [c for c in (old or {}).get("cases", []) if c["name"] == case["name"]]
            manifest["cases"].extend(kept)
            continue
        image = np.array(Image.open(FIX / "images" / case["image"]).convert("RGB"))
        ious, stabs = observe(sam, image, case["kw"])
        print(case["name"], "iou quantiles", np.quantile(ious, [0.1, 0.5, 0.75, 0.9]),
              "stability quantiles", np.quantile(stabs, [0.1, 0.5, 0.9]), file=sys.stderr)
        iou_t, iou_gap = gap_threshold(ious, case["q"][0])
        st_t, st_gap = gap_threshold(stabs, case["q"][1])
        kw = dict(case["kw"], pred_iou_thresh=iou_t, stability_score_thresh=st_t)
        gen = SamAutomaticMaskGenerator(sam, output_mode=case["output_mode"], **kw)
        records = gen.generate(image)
        # Masks the small-region pass changed, to show the fixture exercises it.
        if case["output_mode"] == "uncompressed_rle":
            for r in records:  # pycocotools' string for the same mask, to test the encoder
                r["coco_counts"] = amg_mod.coco_encode_rle(r["segmentation"])["counts"]
        out = OUT / f"{case['name']}.json"
        out.write_text(json.dumps(records))
        entry = dict(name=case["name"], image=case["image"], output_mode=case["output_mode"],
                     file=out.name, config=kw, num_records=len(records),
                     threshold_gaps=dict(pred_iou=iou_gap, stability=st_gap),
                     observed=dict(num_masks=len(ious), iou_range=[float(ious.min()), float(ious.max())]))
        manifest["cases"].append(entry)
        areas = [r["area"] for r in records]
        print(case["name"], "records", len(records), "thr", iou_t, st_t, "gaps", iou_gap, st_gap,
              "areas", areas[:10], file=sys.stderr)
    if not only or SYN_NAME in only:
        records = synthetic_records()
        (OUT / f"{SYN_NAME}.json").write_text(json.dumps(records))
        crops = sorted({tuple(r["crop_box"]) for r in records})
        print(SYN_NAME, "records", len(records), "crops", crops, file=sys.stderr)
        manifest["cases"].append(dict(name=SYN_NAME, synthetic=True, size=list(SYN_SIZE),
                                      radii=list(SYN_RADII), output_mode="uncompressed_rle",
                                      file=f"{SYN_NAME}.json", config=SYN_KW,
                                      num_records=len(records)))
    else:
        manifest["cases"].extend(c for c in old["cases"] if c["name"] == SYN_NAME)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
