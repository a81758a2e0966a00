#!/usr/bin/env python3
"""The one-line switch: `user_code` below is ordinary segment_anything code. It runs once
with `sa` = segment_anything and once with `sa` = samrt (the only difference a user makes
is the import line), and when PyTorch is present the two results are compared with the
fixture tolerances (scores within 2e-3, mask pixels >= 99.5 % in agreement, generator
records matched with mask IoU >= 0.98).

Without --checkpoint it writes a random well-conditioned vit_b .pth with torch (as
tools/bench_cpu.py does); without torch it needs --checkpoint and runs samrt alone.

Usage: python3 tools/switch_demo.py [--checkpoint sam_vit_b_01ec64.pth] [--model-type vit_b]
         [--image tests/fixtures/images/coffee.png] [--samrt-only]
Exit status 0 when the results agree (or only samrt ran), 1 when they do not.
"""
import argparse, importlib, os, sys, tempfile, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def user_code(sa, checkpoint, model_type, image, amg_kwargs):
    """Typical segment_anything code, untouched: a click, a refinement with a box, a
    background point and the previous logits, then "segment everything"."""
    sam = sa.sam_model_registry[model_type](checkpoint=checkpoint)
    sam.to(device="cpu")
    predictor = sa.SamPredictor(sam)
    predictor.set_image(image)
    h, w = image.shape[:2]
    masks, scores, logits = predictor.predict(
        point_coords=np.array([[w // 2, h // 2]]),
        point_labels=np.array([1]),
        multimask_output=True,
    )
    best = int(np.argmax(scores))
    refined, refined_scores, refined_logits = predictor.predict(
        point_coords=np.array([[w // 2, h // 2], [w // 5, h // 5]]),
        point_labels=np.array([1, 0]),
        box=np.array([w // 8, h // 8, 7 * w // 8, 7 * h // 8]),
        mask_input=logits[best][None, :, :],
        multimask_output=False,
    )
    generator = sa.SamAutomaticMaskGenerator(sam, **amg_kwargs)
    records = generator.generate(image)
    return {
        "masks": masks, "scores": scores, "logits": logits,
        "refined": refined, "refined_scores": refined_scores, "refined_logits": refined_logits,
        "records": records,
    }


def compare(a, b):
    """Problems found (empty when the results agree), and a summary line per output."""
    problems, lines = [], []
    for m, s, lg in (("masks", "scores", "logits"), ("refined", "refined_scores", "refined_logits")):
        if a[m].shape != b[m].shape or a[m].dtype != b[m].dtype:
            problems.append(f"{m}: {a[m].shape} {a[m].dtype} vs {b[m].shape} {b[m].dtype}")
            continue
        agree = float((a[m] == b[m]).mean())
        ds = float(np.abs(a[s] - b[s]).max())
        dl = float(np.abs(a[lg] - b[lg]).max())
        lines.append(f"{m}: mask agreement {agree * 100:.4f} %, max |d score| {ds:.1e}, "
                     f"max |d low-res logit| {dl:.1e}")
        if agree < 0.995 or ds > 2e-3:
            problems.append(f"{m}: agreement {agree}, |d score| {ds}")
    ra, rb = a["records"], b["records"]
    lines.append(f"generator: {len(ra)} official records, {len(rb)} samrt records")
    if len(ra) != len(rb):
        problems.append(f"generator: {len(ra)} vs {len(rb)} records")
    else:
        ious, dp, same_keys = [], 0.0, True
        for x, y in zip(ra, rb):
            same_keys &= list(x) == list(y)
            inter = np.logical_and(x["segmentation"], y["segmentation"]).sum()
            union = np.logical_or(x["segmentation"], y["segmentation"]).sum()
            ious.append(1.0 if union == 0 else inter / union)
            dp = max(dp, abs(x["predicted_iou"] - y["predicted_iou"]))
        if ious:
            lines.append(f"generator: min mask IoU {min(ious):.5f}, max |d predicted_iou| "
                         f"{dp:.1e}, same keys in the same order: {same_keys}")
            if min(ious) < 0.98 or dp > 5e-3 or not same_keys:
                problems.append("generator records differ")
    return problems, lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    ap.add_argument("--image", default=str(ROOT / "tests/fixtures/images/coffee.png"))
    ap.add_argument("--samrt-only", action="store_true")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="samrt-switch-")
    os.environ.setdefault("SAMRT_CACHE_DIR", os.path.join(work, "cache"))
    try:
        import torch  # noqa: F401
        import segment_anything  # noqa: F401
        have_torch = not a.samrt_only
    except ImportError as e:
        print(f"PyTorch side unavailable ({e}): running samrt only")
        have_torch = False

    import samrt
    amg_kwargs = {"points_per_side": 8}
    checkpoint = a.checkpoint
    if checkpoint is None:
        if not have_torch:
            sys.exit("without PyTorch, pass --checkpoint (an official .pth or samrt safetensors)")
        import torch
        sys.path.insert(0, str(ROOT / "tools"))
        from bench_cpu import random_vit_b
        checkpoint = os.path.join(work, "vit_b_random.pth")
        torch.save(random_vit_b(0).state_dict(), checkpoint)
        a.model_type = "vit_b"
        # Random weights pass no official quality filter: keep every mask for the comparison.
        amg_kwargs.update(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    image = samrt.load_image(a.image)

    results = {}
    for name in (["segment_anything"] if have_torch else []) + ["samrt"]:
        sa = importlib.import_module(name)  # the one line a user changes
        t = time.perf_counter()
        results[name] = user_code(sa, checkpoint, a.model_type, image, amg_kwargs)
        print(f"{name}: {time.perf_counter() - t:.1f} s, "
              f"{len(results[name]['records'])} generator records", flush=True)
    if not have_torch:
        return
    problems, lines = compare(results["segment_anything"], results["samrt"])
    print("\n".join(lines))
    if problems:
        print("DIFFERENT:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("same results")


if __name__ == "__main__":
    main()
