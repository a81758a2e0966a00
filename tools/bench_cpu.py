#!/usr/bin/env python3
"""Times the official PyTorch CPU predictor against the whole `samrt segment --device cpu`
process, in one run on the same machine, with a random-weight vit_b.

PyTorch: model already built, timed = set_image + predict (one foreground point).
samrt:   timed = the whole process (start, mmap weights, decode image, encoder, decoder,
         post-processing, PNG/npy output), from an fp16 safetensors file.

Usage: python3 tools/bench_cpu.py [--runs 3] [--image PATH] [--samrt target/release/samrt]
Writes bench/results/<date>-cpu.json and prints the ratio samrt / torch.
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, tempfile, time

import numpy as np
import torch
from PIL import Image


def random_vit_b(seed):
    from segment_anything import sam_model_registry
    torch.manual_seed(seed)
    sam = sam_model_registry["vit_b"](checkpoint=None)
    with torch.no_grad():
        for name, p in sam.state_dict().items():
            if p.dtype.is_floating_point:
                fan_in = p.shape[1] if p.dim() > 1 else 1
                scale = 1.0 / max(fan_in, 1) ** 0.5 if p.dim() > 1 else 0.1
                p.copy_((torch.randn_like(p) * scale).half().float())
                if name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                    p.add_(1.0)
    return sam.eval()


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--image", default="tests/fixtures/images/coffee.png")
    ap.add_argument("--samrt", default="target/release/samrt")
    args = ap.parse_args()
    from segment_anything import SamPredictor

    work = tempfile.mkdtemp(prefix="samrt-bench-")
    sam = random_vit_b(0)
    pth = os.path.join(work, "vit_b_random.pth")
    torch.save(sam.state_dict(), pth)
    st = os.path.join(work, "vit_b_random.safetensors")
    subprocess.run([args.samrt, "convert", pth, st], check=True)

    img = np.array(Image.open(args.image).convert("RGB"))
    h, w = img.shape[:2]
    point = np.array([[w // 2, h // 2]], dtype=np.float64)
    label = np.array([1])
    predictor = SamPredictor(sam)

    def torch_once():
        t = time.perf_counter()
        predictor.set_image(img)
        predictor.predict(point, label, multimask_output=True)
        return time.perf_counter() - t

    def samrt_once():
        out = os.path.join(work, "out")
        t = time.perf_counter()
        subprocess.run([args.samrt, "segment", "--model", st, "--image", args.image,
                        "--point", f"{w // 2},{h // 2}", "--device", "cpu", "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t

    torch_once()  # warm-up: first call allocates and picks kernels
    samrt_once()  # warm-up: page cache
    tt, ts = [], []
    for _ in range(args.runs):  # interleaved so machine noise hits both alike
        tt.append(torch_once())
        ts.append(samrt_once())
    t_med, s_med = statistics.median(tt), statistics.median(ts)
    res = {
        "device": f"CPU: {cpu_name()} ({os.cpu_count()} cores)",
        "cpu_threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "command": " ".join([sys.executable] + sys.argv),
        "torch_version": torch.__version__,
        "image": args.image,
        "image_size": [h, w],
        "results": [
            {"system": "torch-fp32", "model": "vit_b", "batch": 1, "component": "set_image+predict",
             "median_ms": t_med * 1e3, "runs_ms": [x * 1e3 for x in tt]},
            {"system": "samrt", "model": "vit_b", "batch": 1, "component": "segment process",
             "median_ms": s_med * 1e3, "runs_ms": [x * 1e3 for x in ts]},
        ],
        "ratio_samrt_over_torch": s_med / t_med,
    }
    os.makedirs("bench/results", exist_ok=True)
    path = f"bench/results/{res['date']}-cpu.json"
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
    print(f"torch set_image+predict median {t_med*1e3:.0f} ms; samrt segment process median {s_med*1e3:.0f} ms; ratio {s_med/t_med:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
