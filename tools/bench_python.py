#!/usr/bin/env python3
"""The samrt Python package against the official segment_anything, side by side in one
process on the same machine, model weights and image (random well-conditioned vit_b, as
tools/bench_cpu.py builds it).

Timed (model already loaded on both sides, one warm-up call each, runs interleaved so that
machine noise hits both alike):
  predictor   SamPredictor.set_image(image) + predict(one foreground point)
  generator   SamAutomaticMaskGenerator(model).generate(image), official defaults
              (32x32 points, binary_mask)
  overhead    samrt SamPredictor.predict from Python (argument coercion, the extension
              call, numpy results) against the same Sam::predict timed inside Rust
              (Model.time_predict), median per call

Needs torch, torchvision, Pillow, segment_anything and the samrt package (pip install
./python, or PYTHONPATH=python after `maturin develop`).

Usage: python3 tools/bench_python.py [--runs 3] [--gen-runs 1] [--image PATH]
         [--overhead-iters 30] [--skip-generator]
Writes bench/results/<date>-python-vit_b.json.
"""
import argparse, datetime, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from bench_cpu import cpu_name, random_vit_b  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gen-runs", type=int, default=1)
    ap.add_argument("--image", default=str(ROOT / "tests/fixtures/images/coffee.png"))
    ap.add_argument("--overhead-iters", type=int, default=30)
    ap.add_argument("--skip-generator", action="store_true")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="samrt-bench-python-")
    os.environ.setdefault("SAMRT_CACHE_DIR", os.path.join(work, "cache"))
    import segment_anything as official
    import samrt

    sam_torch = random_vit_b(0)
    pth = os.path.join(work, "vit_b_random.pth")
    torch.save(sam_torch.state_dict(), pth)
    # The same code loads the same file on both sides.
    sam_torch = official.sam_model_registry["vit_b"](checkpoint=pth).eval()
    sam_rt = samrt.sam_model_registry["vit_b"](checkpoint=pth)

    image = np.array(Image.open(a.image).convert("RGB"))
    h, w = image.shape[:2]
    point, label = np.array([[w // 2, h // 2]], dtype=np.float64), np.array([1])
    results = []

    def predictor_once(lib, sam):
        p = lib.SamPredictor(sam)
        p.set_image(image)
        return p.predict(point_coords=point, point_labels=label, multimask_output=True)

    systems = [("torch-fp32", official, sam_torch), ("samrt-python", samrt, sam_rt)]
    times = {s: [] for s, _, _ in systems}
    outs = {}
    for s, lib, sam in systems:  # warm-up
        predictor_once(lib, sam)
    for _ in range(a.runs):
        for s, lib, sam in systems:
            t, outs[s] = timed(lambda: predictor_once(lib, sam))
            times[s].append(t)
    agree = float((outs["torch-fp32"][0] == outs["samrt-python"][0]).mean())
    dscore = float(np.abs(outs["torch-fp32"][1] - outs["samrt-python"][1]).max())
    for s in times:
        results.append({"system": s, "component": "set_image+predict", "model": "vit_b",
                        "median_ms": statistics.median(times[s]) * 1e3,
                        "runs_ms": [x * 1e3 for x in times[s]]})
    ratio_pred = statistics.median(times["samrt-python"]) / statistics.median(times["torch-fp32"])
    print(f"set_image+predict: torch {statistics.median(times['torch-fp32']):.2f} s, "
          f"samrt {statistics.median(times['samrt-python']):.2f} s, ratio {ratio_pred:.3f} "
          f"(mask agreement {agree:.5f}, max |d score| {dscore:.1e})", flush=True)

    # Python-layer overhead: the same decode timed from Python and inside Rust.
    pred = samrt.SamPredictor(sam_rt)
    pred.set_image(image)
    emb = pred._emb
    py_t, rust_t = [], []
    for _ in range(3):
        pred.predict(point_coords=point, point_labels=label)
    for _ in range(a.overhead_iters):  # interleaved, one call each per round
        t, _ = timed(lambda: pred.predict(point_coords=point, point_labels=label))
        py_t.append(t)
        rust_t.extend(sam_rt._core.time_predict(emb, (float(point[0, 0]), float(point[0, 1])), 1))
    py_med, rust_med = statistics.median(py_t), statistics.median(rust_t)
    overhead = py_med / rust_med - 1
    results.append({"system": "samrt-python", "component": "predict (Python call)",
                    "model": "vit_b", "median_ms": py_med * 1e3})
    results.append({"system": "samrt-rust", "component": "predict (Sam::predict inside Rust)",
                    "model": "vit_b", "median_ms": rust_med * 1e3})
    print(f"predict: Python {py_med*1e3:.2f} ms, Rust {rust_med*1e3:.2f} ms, "
          f"overhead {overhead*100:+.2f} %", flush=True)

    ratio_gen = None
    if not a.skip_generator:
        gt = {s: [] for s, _, _ in systems}
        counts = {}
        for _ in range(a.gen_runs):
            for s, lib, sam in systems:
                gen = lib.SamAutomaticMaskGenerator(sam)
                t, recs = timed(lambda: gen.generate(image))
                gt[s].append(t)
                counts[s] = len(recs)
                print(f"generate {s}: {t:.1f} s, {len(recs)} records", flush=True)
        for s in gt:
            results.append({"system": s, "component": "generate (32x32, defaults)",
                            "model": "vit_b", "median_ms": statistics.median(gt[s]) * 1e3,
                            "runs_ms": [x * 1e3 for x in gt[s]], "records": counts[s]})
        ratio_gen = statistics.median(gt["samrt-python"]) / statistics.median(gt["torch-fp32"])
        print(f"generate: ratio {ratio_gen:.3f}")

    res = {
        "device": f"CPU: {cpu_name()} ({os.cpu_count()} cores)",
        "cpu_threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "image": os.path.relpath(a.image, ROOT),
        "image_size": [h, w],
        "results": results,
        "ratio_predictor": ratio_pred,
        "ratio_generator": ratio_gen,
        "python_overhead_predict": overhead,
        "predictor_mask_agreement": agree,
    }
    out = ROOT / "bench" / "results" / f"{res['date']}-python-vit_b.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
