"""SamAutomaticMaskGenerator through the Python API against the official records stored
in tests/fixtures/amg (tools/make_amg_fixtures.py), with tests/amg.rs's tolerances: the
same number of records, each official mask matched with mask IoU >= 0.98, |d predicted_iou|
<= 5e-3, identical point and crop box (and bbox and area where the masks are identical)."""

import numpy as np
import pytest
from conftest import FIXTURES, image

import samrt
from samrt.automatic_mask_generator import build_all_layer_point_grids

KEYS = [
    "segmentation",
    "area",
    "bbox",
    "predicted_iou",
    "point_coords",
    "stability_score",
    "crop_box",
]


def coco_counts(s):
    """pycocotools' compressed RLE string back to run lengths."""
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(seg):
    """An official RLE dict (either mode) as an HxW bool mask (runs over column-major)."""
    h, w = seg["size"]
    counts = seg["counts"]
    if isinstance(counts, str):
        counts = coco_counts(counts)
    assert sum(counts) == h * w
    flat = np.zeros(h * w, dtype=bool)
    pos = 0
    for i, n in enumerate(counts):
        if i % 2:
            flat[pos : pos + n] = True
        pos += n
    return flat.reshape(w, h).T


def mask_iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def case_of(amg_manifest, name):
    return next(c for c in amg_manifest["cases"] if c["name"] == name)


def check_records(name, ours, official, mode):
    assert len(ours) == len(official), f"{name}: record count"
    for r in ours:
        assert list(r) == KEYS
        assert isinstance(r["area"], int) and isinstance(r["predicted_iou"], float)
        assert isinstance(r["stability_score"], float)
        assert all(isinstance(v, int) for v in r["bbox"] + r["crop_box"])
        assert len(r["point_coords"]) == 1 and all(
            isinstance(v, float) for v in r["point_coords"][0]
        )
        seg = r["segmentation"]
        if mode == "binary_mask":
            assert seg.dtype == np.bool_ and seg.ndim == 2
        else:
            assert list(seg) == ["size", "counts"]
            assert isinstance(seg["counts"], str if mode == "coco_rle" else list)
    as_mask = (lambda s: s) if mode == "binary_mask" else rle_to_mask
    our_masks = [as_mask(r["segmentation"]) for r in ours]
    used = [False] * len(ours)
    for k, o in enumerate(official):
        om = rle_to_mask(o["segmentation"])
        if not used[k] and mask_iou(om, our_masks[k]) >= 0.98:
            j = k  # in order when it fits, else the best unused (ties may reorder)
        else:
            free = [j for j in range(len(ours)) if not used[j]]
            j = max(free, key=lambda j: mask_iou(om, our_masks[j]))
        used[j] = True
        iou = mask_iou(om, our_masks[j])
        assert iou >= 0.98, f"{name} record {k}: mask IoU {iou}"
        assert abs(ours[j]["predicted_iou"] - o["predicted_iou"]) <= 5e-3, f"{name} {k}"
        np.testing.assert_allclose(ours[j]["point_coords"], o["point_coords"], atol=1e-9)
        assert ours[j]["crop_box"] == [float(v) for v in o["crop_box"]], f"{name} {k}"
        if iou == 1.0:
            assert ours[j]["bbox"] == [float(v) for v in o["bbox"]], f"{name} {k}"
            assert ours[j]["area"] == o["area"], f"{name} {k}"
            assert ours[j]["area"] == int(our_masks[j].sum())


@pytest.mark.parametrize("name", ["chelsea_coco", "coffee_crops_regions", "coffee_crops_no_nms"])
def test_generate_matches_official(sam, amg_manifest, name):
    import json

    case = case_of(amg_manifest, name)
    official = json.loads((FIXTURES / "amg" / case["file"]).read_text())
    assert official
    gen = samrt.SamAutomaticMaskGenerator(sam, output_mode=case["output_mode"], **case["config"])
    ours = gen.generate(image(case["image"]))
    check_records(name, ours, official, case["output_mode"])


def test_output_modes_and_point_grids_agree(sam, amg_manifest):
    case = case_of(amg_manifest, "chelsea_coco")
    img = image(case["image"])
    cfg = dict(case["config"], points_per_side=6)  # the chelsea_coco settings, fewer points
    by_mode = {
        m: samrt.SamAutomaticMaskGenerator(sam, output_mode=m, **cfg).generate(img)
        for m in ("binary_mask", "uncompressed_rle", "coco_rle")
    }
    n = len(by_mode["coco_rle"])
    assert n > 0 and all(len(v) == n for v in by_mode.values())
    for i in range(n):
        ref = by_mode["binary_mask"][i]["segmentation"]
        assert ref.shape == img.shape[:2]
        for m in ("uncompressed_rle", "coco_rle"):
            np.testing.assert_array_equal(rle_to_mask(by_mode[m][i]["segmentation"]), ref)
            for key in KEYS[1:]:
                assert by_mode[m][i][key] == by_mode["binary_mask"][i][key]
    # Explicit official point grids give the same records as points_per_side.
    pps = cfg.pop("points_per_side")
    grids = build_all_layer_point_grids(pps, 0, 1)
    gen = samrt.SamAutomaticMaskGenerator(
        sam, points_per_side=None, point_grids=grids, output_mode="coco_rle", **cfg
    )
    assert gen.generate(img) == by_mode["coco_rle"]


def test_official_defaults_and_attributes(sam):
    gen = samrt.SamAutomaticMaskGenerator(sam)
    assert gen.points_per_batch == 64 and gen.pred_iou_thresh == 0.88
    assert gen.stability_score_thresh == 0.95 and gen.stability_score_offset == 1.0
    assert gen.box_nms_thresh == 0.7 and gen.crop_n_layers == 0 and gen.crop_nms_thresh == 0.7
    assert gen.crop_overlap_ratio == 512 / 1500 and gen.crop_n_points_downscale_factor == 1
    assert gen.min_mask_region_area == 0 and gen.output_mode == "binary_mask"
    assert len(gen.point_grids) == 1 and gen.point_grids[0].shape == (1024, 2)
    assert isinstance(gen.predictor, samrt.SamPredictor)
    # The official grid, bit for bit: np.linspace centres, x fastest.
    side = np.linspace(1 / 64, 1 - 1 / 64, 32)
    np.testing.assert_array_equal(gen.point_grids[0][:32, 0], side)
    np.testing.assert_array_equal(gen.point_grids[0][::32, 1], side)
    layered = build_all_layer_point_grids(16, 2, 2)
    assert [len(g) for g in layered] == [256, 64, 16]
