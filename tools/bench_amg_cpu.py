#!/usr/bin/env python3
"""Times the official SamAutomaticMaskGenerator on the CPU against `samrt auto --device cpu`,
side by side on the same machine, model file, image and settings.

PyTorch: model already loaded; timed = generator.generate(image) (every crop's set_image,
         all point batches, NMS, RLE encoding in the requested output mode).
samrt:   timed = the whole `samrt auto` process (start, weights, image decode, generation,
         output files), so it is charged for work the PyTorch side gets for free.

The model is an official-layout .pth state dict. Default: the tiny fixture model
(tests/fixtures/sam_tiny.pth, built like tools/make_fixtures.py). For `--model-type vit_b`
pass a real or random vit_b .pth (slow on the CPU: minutes per image), or `--random-vit-b`
to write tools/bench_cpu.py's random well-conditioned vit_b to a temporary .pth.

With random weights no mask passes the official default thresholds, so that setting times
only the encoder and the point batches' decoder. `--pred-iou-thresh 0
--stability-score-thresh 0` keeps every mask through the filters (3,072 at 32x32 points):
each is upscaled to the image, scored, thresholded and RLE-encoded, then box NMS runs, as
with trained weights. The result file's name then ends in `-thresh0`.

Usage: python3 tools/bench_amg_cpu.py [--model PTH] [--model-type tiny|vit_b|vit_l|vit_h]
         [--image PATH] [--runs 1] [--points-per-side 32] [--output-mode coco_rle]
         [--samrt PATH] [--threads N] [--random-vit-b]
         [--pred-iou-thresh T] [--stability-score-thresh T]
Writes bench/results/<date>-amg-cpu-<model-type>[-thresh0].json.
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def load_model(path, kind):
    if kind == "tiny":
        sys.path.insert(0, str(ROOT / "tools"))
        import make_fixtures
        sam = make_fixtures.build_tiny_sam()
    else:
        from segment_anything import sam_model_registry
        sam = sam_model_registry[kind](checkpoint=None)
    sam.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return sam.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "tests/fixtures/sam_tiny.pth"))
    ap.add_argument("--model-type", default="tiny", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    ap.add_argument("--image", default=str(ROOT / "tests/fixtures/images/astronaut.png"))
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--pred-iou-thresh", type=float, default=0.88)
    ap.add_argument("--stability-score-thresh", type=float, default=0.95)
    ap.add_argument("--output-mode", default="coco_rle",
                    choices=["binary_mask", "uncompressed_rle", "coco_rle"])
    ap.add_argument("--samrt", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")), "release", "samrt"))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--random-vit-b", action="store_true",
                    help="time a random well-conditioned vit_b (tools/bench_cpu.py's)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tmp = tempfile.TemporaryDirectory()
    if a.random_vit_b:
        sys.path.insert(0, str(ROOT / "tools"))
        from bench_cpu import random_vit_b
        a.model, a.model_type = os.path.join(tmp.name, "vit_b_random.pth"), "vit_b"
        torch.save(random_vit_b(0).state_dict(), a.model)
    load_before = os.getloadavg()

    from segment_anything import SamAutomaticMaskGenerator
    image = np.array(Image.open(a.image).convert("RGB"))
    kw = dict(points_per_side=a.points_per_side, pred_iou_thresh=a.pred_iou_thresh,
              stability_score_thresh=a.stability_score_thresh)
    sam = load_model(a.model, a.model_type)
    gen = SamAutomaticMaskGenerator(sam, output_mode=a.output_mode, **kw)
    t_torch, n_torch = [], None
    for _ in range(a.runs):
        t0 = time.perf_counter()
        n_torch = len(gen.generate(image))
        t_torch.append(time.perf_counter() - t0)

    cmd_base = [a.samrt, "auto", "--device", "cpu", "--model", a.model, "--image", a.image,
                "--points-per-side", str(a.points_per_side),
                "--pred-iou-thresh", str(a.pred_iou_thresh),
                "--stability-score-thresh", str(a.stability_score_thresh),
                "--output-mode", a.output_mode]
    # One untimed run converts the .pth into samrt's cache, as a user's first run would.
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(cmd_base + ["--out", os.path.join(d, "warm")], check=True,
                       capture_output=True)
        t_samrt, n_samrt = [], None
        for r in range(a.runs):
            out = os.path.join(d, f"run{r}")
            t0 = time.perf_counter()
            subprocess.run(cmd_base + ["--out", out], check=True, capture_output=True)
            t_samrt.append(time.perf_counter() - t0)
            # <stem>.json; --out also holds samrt_auto_params.json.
            f = Path(out) / (Path(a.image).stem + ".json")
            n_samrt = len(json.loads(f.read_text())) if f.is_file() else None

    res = dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                     torch_threads=a.threads, torch=torch.__version__),
        model=dict(file=a.model, type=a.model_type), image=a.image,
        image_size=list(image.shape[:2]), settings=dict(kw, output_mode=a.output_mode),
        torch=dict(seconds=t_torch, median=statistics.median(t_torch), records=n_torch),
        samrt=dict(seconds=t_samrt, median=statistics.median(t_samrt), records=n_samrt,
                   timed="whole process"),
        ratio_samrt_over_torch=statistics.median(t_samrt) / statistics.median(t_torch),
        # Other processes on the machine: the 1-minute load average before and after.
        loadavg_1min=dict(before=load_before[0], after=os.getloadavg()[0]),
    )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    zero = a.pred_iou_thresh == 0 and a.stability_score_thresh == 0
    suffix = "-thresh0" if zero else ""
    path = out_dir / f"{datetime.date.today().isoformat()}-amg-cpu-{a.model_type}{suffix}.json"
    path.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
