#!/usr/bin/env python3
"""Build tests/fixtures/amg/vit256_*.json: records of the official SamAutomaticMaskGenerator on
the 256-px model of tests/fixtures/img_size/ (encoder256.pth, a small well-conditioned random
encoder, with sam_tiny.pth's prompt encoder and mask decoder), for tests/cuda_amg.rs.

Why a 256-px model: the automatic mask generator on the device is checked on vgpu, a PTX
simulator that takes seconds per decoded prompt at 1024 px. At 256 px the embedding is 16x16 and
the low-res masks 64x64, and a few dozen prompts over crops fit the CI budget.

Thresholds are picked as tools/make_amg_fixtures.py picks them (the middle of the widest gap
between the values the official run produces near a quantile), so no mask sits near a
threshold: the device decoder rounds the image side to fp16 and its predicted IoU and stability
move by ~1e-5 and ~1e-3.

Run: `python3 tools/make_amg_vit256_fixtures.py` from anywhere. Needs what
tools/make_amg_fixtures.py and tools/make_img_size_fixtures.py need.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_img_size_fixtures as mis  # noqa: E402  (installs the torchvision shim if needed)
from make_amg_fixtures import FIX, OUT, gap_threshold, observe  # noqa: E402

from segment_anything import SamAutomaticMaskGenerator  # noqa: E402

SIZE = 256
IMAGE = "coffee.png"
CASES = [
    # One crop, two batches (8 is a power of two: the device pads a batch to one), box NMS.
    # Random-weight masks are dithered and span the image, so box NMS at 0.7 keeps about one;
    # 0.9 keeps several and still drops some.
    dict(name="vit256_grid", q=(0.1, 0.1),
         kw=dict(points_per_side=4, points_per_batch=8, stability_score_offset=0.05,
                 box_nms_thresh=0.9)),
    # Crop layer 1 (4 crops of 1 point each): crop embedding, point scaling, the crop-edge
    # filter (which drops every inner-crop mask of this model: they span their crop), small
    # regions (dithered masks: most change). NMS off so that the full image's 12 masks remain.
    dict(name="vit256_crops", q=(0.1, 0.1),
         kw=dict(points_per_side=2, points_per_batch=4, crop_n_layers=1,
                 crop_n_points_downscale_factor=2, stability_score_offset=0.05,
                 box_nms_thresh=1.0, crop_nms_thresh=1.0, min_mask_region_area=100)),
]


def load_model():
    enc16 = {k[len("image_encoder."):]: v for k, v in
             torch.load(FIX / "img_size" / f"encoder{SIZE}.pth", map_location="cpu",
                        weights_only=True).items()}
    sam, adapted = mis.load_model(enc16, mis.decoder_state(), SIZE, torch.float32)
    assert not adapted
    return sam


def main() -> None:
    torch.set_num_threads(2)
    sam = load_model()
    image = np.array(Image.open(FIX / "images" / IMAGE).convert("RGB"))
    manifest = {"generator": "tools/make_amg_vit256_fixtures.py", "torch_threads": 2,
                "torch": torch.__version__, "model": f"img_size/encoder{SIZE}.pth + sam_tiny.pth "
                "decoder", "image_size": SIZE, "cases": []}
    for case in CASES:
        ious, stabs = observe(sam, image, case["kw"])
        iou_t, iou_gap = gap_threshold(ious, case["q"][0])
        st_t, st_gap = gap_threshold(stabs, case["q"][1])
        kw = dict(case["kw"], pred_iou_thresh=iou_t, stability_score_thresh=st_t)
        records = SamAutomaticMaskGenerator(sam, output_mode="uncompressed_rle", **kw).generate(image)
        out = OUT / f"{case['name']}.json"
        out.write_text(json.dumps(records))
        crops = sorted({tuple(r["crop_box"]) for r in records})
        print(case["name"], "records", len(records), "thr", iou_t, st_t, "gaps", iou_gap, st_gap,
              "crops", crops, "areas", [r["area"] for r in records][:12], file=sys.stderr)
        manifest["cases"].append(dict(
            name=case["name"], image=IMAGE, output_mode="uncompressed_rle", file=out.name,
            config=kw, num_records=len(records),
            threshold_gaps=dict(pred_iou=iou_gap, stability=st_gap),
            observed=dict(num_masks=len(ious), iou_range=[float(ious.min()), float(ious.max())],
                          stability_range=[float(stabs.min()), float(stabs.max())])))
    (OUT / "vit256_manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
