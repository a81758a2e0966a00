#!/usr/bin/env python3
"""Times the official PyTorch SAM (segment_anything) per component, for the baselines that
samrt's speed claims are measured against. Same components and JSON schema as
`samrt bench --json`, so both land in one bench/results file.

Systems (--systems, comma-separated):
  torch-fp32       eager float32, the official code unchanged.
  torch-bf16-sdpa  bf16 autocast, and every attention (image encoder with its decomposed
                   relative-position bias as an additive mask, mask decoder) through
                   F.scaled_dot_product_attention.
  torch-compile    torch-bf16-sdpa with torch.compile(mode="max-autotune") on the image
                   encoder (the decoder stays eager: its prompt shapes vary per call).

Components (--components, comma-separated):
  encoder        image_encoder on a [batch, 3, 1024, 1024] input.
  decoder        one single-point prompt end to end: SamPredictor.predict_torch with the
                 embedding already set, masks post-processed to the 1500x2250 original and
                 thresholded (the official interactive path).
  decoder_batch  --prompts single-point prompts at once: prompt_encoder + mask_decoder,
                 low-res logits and scores (predict_torch minus the full-size upsampling,
                 which for 1024 prompts would be 41 GB of float masks).
  auto           SamAutomaticMaskGenerator with official defaults on one 1500x2250 image.

Timing: median and p90 over --iters after --warmup calls; CUDA events on the GPU (the
work between the events, synchronised), the wall clock on the CPU. Peak memory: the CUDA
allocator's peak for that component on the GPU, the process's peak RSS on the CPU.

Model: random weights of --model-type (the official builder, checkpoint=None) unless
--checkpoint gives an official .pth. Results are merged into --out (default
bench/results/<date>-<device slug>.json): rows with the same system, model, batch and
component are replaced.

Usage: python3 tools/bench_torch.py [--device cuda|cpu] [--model-type vit_b] [--checkpoint PTH]
         [--systems torch-fp32,torch-bf16-sdpa,torch-compile]
         [--components encoder,decoder,decoder_batch,auto] [--batch 1] [--prompts 1024]
         [--iters 20] [--warmup 3] [--out FILE]
"""
import argparse, contextlib, datetime, json, os, platform, re, resource, shlex, subprocess, sys, time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
ORIG_H, ORIG_W = 1500, 2250
SYSTEMS = ["torch-fp32", "torch-bf16-sdpa", "torch-compile"]
COMPONENTS = ["encoder", "decoder", "decoder_batch", "auto"]


def device_name(dev):
    if dev == "cuda":
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"CPU: {name} ({torch.get_num_threads()} threads)"


def driver_version(dev):
    if dev != "cuda":
        return None
    with contextlib.suppress(Exception):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        if out:
            return out.splitlines()[0]
    return None


# --- bf16 + SDPA variants of the official attention modules --------------------------------

def encoder_attention_sdpa(self, x):
    """image_encoder.Attention.forward with the rel-pos bias as an additive SDPA mask."""
    from segment_anything.modeling.image_encoder import get_rel_pos
    B, H, W, _ = x.shape
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # [B, heads, HW, d]
    mask = None
    if self.use_rel_pos:
        d = q.shape[-1]
        Rh = get_rel_pos(H, H, self.rel_pos_h).to(q.dtype)
        Rw = get_rel_pos(W, W, self.rel_pos_w).to(q.dtype)
        r_q = q.reshape(B, self.num_heads, H, W, d)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, Rh)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, Rw)
        mask = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, self.num_heads, H * W, H * W)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    o = o.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(o)


def decoder_attention_sdpa(self, q, k, v):
    """transformer.Attention.forward through SDPA (same 1/sqrt(c_per_head) scale)."""
    q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
    q = self._separate_heads(q, self.num_heads)
    k = self._separate_heads(k, self.num_heads)
    v = self._separate_heads(v, self.num_heads)
    return self.out_proj(self._recombine_heads(F.scaled_dot_product_attention(q, k, v)))


def patch_sdpa():
    from segment_anything.modeling import image_encoder, transformer
    image_encoder.Attention.forward = encoder_attention_sdpa
    transformer.Attention.forward = decoder_attention_sdpa


# --- timing -----------------------------------------------------------------------------

class Timer:
    def __init__(self, dev):
        self.dev = dev

    def measure(self, fn, iters, warmup):
        for _ in range(warmup):
            fn()
        if self.dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        ts = []
        for _ in range(iters):
            if self.dev == "cuda":
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b))
            else:
                t = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t) * 1e3)
        ts.sort()
        p90 = ts[max(1, int(np.ceil(len(ts) * 0.9))) - 1]
        if self.dev == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return ts[len(ts) // 2], p90, int(round(peak))


def build(model_type, checkpoint, dev):
    from segment_anything import sam_model_registry
    sam = sam_model_registry[model_type](checkpoint=None)
    if checkpoint:
        sam.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    return sam.eval().to(dev)


def synthetic_image():
    """The same 1500x2250 RGB image `samrt bench` makes: byte i = (i * 2654435761) >> 13."""
    i = np.arange(ORIG_H * ORIG_W * 3, dtype=np.uint64)
    return ((i * np.uint64(2654435761)) >> np.uint64(13)).astype(np.uint8).reshape(ORIG_H, ORIG_W, 3)


def run_system(system, a, dev, timer, results):
    from segment_anything import SamPredictor
    sam = build(a.model_type, a.checkpoint, dev)
    amp = (torch.autocast(device_type=dev, dtype=torch.bfloat16)
           if system != "torch-fp32" else contextlib.nullcontext())
    encoder = sam.image_encoder
    if system == "torch-compile":
        encoder = torch.compile(encoder, mode="max-autotune")
    row = lambda comp, batch, m, p, peak: results.append(
        {"system": system, "model": a.model_type, "batch": batch, "component": comp,
         "median_ms": m, "p90_ms": p, "peak_mem_mb": peak})
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode(), amp:
        x = torch.randn(a.batch, 3, 1024, 1024, generator=gen).to(dev)
        if "encoder" in a.components:
            m, p, peak = timer.measure(lambda: encoder(x), a.iters, a.warmup)
            row("encoder", a.batch, m, p, peak)
            print(f"{system:16} encoder        batch {a.batch:5}: median {m:9.3f} ms  p90 {p:9.3f} ms  peak {peak} MB", flush=True)
        emb = encoder(x[:1])
        pred = SamPredictor(sam)
        pred.features, pred.is_image_set = emb, True
        pred.original_size = (ORIG_H, ORIG_W)
        pred.input_size = pred.transform.get_preprocess_shape(ORIG_H, ORIG_W, 1024)
        if "decoder" in a.components:
            pt = pred.transform.apply_coords_torch(
                torch.tensor([[[ORIG_W / 2, ORIG_H / 3]]], device=dev), (ORIG_H, ORIG_W))
            lab = torch.ones(1, 1, device=dev)
            m, p, peak = timer.measure(lambda: pred.predict_torch(pt, lab, multimask_output=True),
                                       a.iters, a.warmup)
            row("decoder", 1, m, p, peak)
            print(f"{system:16} decoder        batch     1: median {m:9.3f} ms  p90 {p:9.3f} ms  peak {peak} MB", flush=True)
        if "decoder_batch" in a.components:
            n = a.prompts
            side = int(np.ceil(np.sqrt(n)))
            g = (np.arange(side) + 0.5) / side
            pts = np.stack(np.meshgrid(g * ORIG_W, g * ORIG_H), -1).reshape(-1, 2)[:n]
            pts = pred.transform.apply_coords_torch(
                torch.tensor(pts, dtype=torch.float32, device=dev)[:, None, :], (ORIG_H, ORIG_W))
            labs = torch.ones(n, 1, device=dev)
            pe = sam.prompt_encoder.get_dense_pe()

            def batch():
                sparse, dense = sam.prompt_encoder(points=(pts, labs), boxes=None, masks=None)
                return sam.mask_decoder(image_embeddings=emb, image_pe=pe,
                                        sparse_prompt_embeddings=sparse,
                                        dense_prompt_embeddings=dense, multimask_output=True)
            m, p, peak = timer.measure(batch, a.iters, a.warmup)
            row("decoder_batch", n, m, p, peak)
            print(f"{system:16} decoder_batch  batch {n:5}: median {m:9.3f} ms  p90 {p:9.3f} ms  "
                  f"peak {peak} MB  ({n / m * 1e3:,.0f} prompts/s)", flush=True)
        if "auto" in a.components:
            from segment_anything import SamAutomaticMaskGenerator
            sam.image_encoder = encoder
            amg = SamAutomaticMaskGenerator(sam)
            img = synthetic_image()
            m, p, peak = timer.measure(lambda: amg.generate(img), a.auto_iters, 1)
            row("auto", 1, m, p, peak)
            print(f"{system:16} auto           batch     1: median {m:9.3f} ms  p90 {p:9.3f} ms  peak {peak} MB", flush=True)
    del sam, pred
    if dev == "cuda":
        torch.cuda.empty_cache()


def merge(path, doc):
    if path.exists():
        old = json.loads(path.read_text())
        key = lambda r: (r["system"], r["model"], r["batch"], r["component"])
        new_keys = {key(r) for r in doc["results"]}
        doc["results"] = [r for r in old.get("results", []) if key(r) not in new_keys] + doc["results"]
        for k in ("device", "driver"):
            if old.get(k) not in (None, doc[k]):
                sys.exit(f"{path} was written on {old[k]!r}, not {doc[k]!r}: pass another --out")
        if old.get("command") and old["command"] != doc["command"]:
            doc["command"] = old["command"] + " ; " + doc["command"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    choices=["cuda", "cpu"])
    ap.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    ap.add_argument("--checkpoint")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--components", default=",".join(COMPONENTS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--auto-iters", type=int, default=3, help="timed generate() calls")
    ap.add_argument("--out")
    a = ap.parse_args()
    names = [s for s in a.systems.split(",") if s]
    for s in names:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r} (have {', '.join(SYSTEMS)})")
    # fp32 first: the SDPA patch replaces the official forwards for the rest of the run.
    a.systems = [s for s in SYSTEMS if s in names]
    a.components = [c for c in a.components.split(",") if c]
    for c in a.components:
        if c not in COMPONENTS:
            ap.error(f"unknown component {c!r} (have {', '.join(COMPONENTS)})")
    if min(a.batch, a.prompts, a.iters, a.auto_iters) < 1 or a.warmup < 0:
        ap.error("--batch, --prompts, --iters and --auto-iters must be at least 1")
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_torch.py: --device cuda but torch sees no GPU")
    dev = a.device
    name = device_name(dev)
    timer = Timer(dev)
    results = []
    for s in a.systems:
        if s != "torch-fp32":
            patch_sdpa()  # after the fp32 runs: it replaces the official forwards
        run_system(s, a, dev, timer, results)
    date = datetime.date.today().isoformat()
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"{date}-{slug}.json"
    doc = {"device": name, "driver": driver_version(dev), "date": date,
           "command": "python3 " + " ".join(shlex.quote(x) for x in sys.argv),
           "torch": torch.__version__, "results": results}
    merge(out, doc)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
