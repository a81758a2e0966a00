#!/usr/bin/env python3
"""Writes tests/fixtures/resize/: reference outputs of Pillow's BILINEAR resize (the
official image resize) and of torch's F.interpolate bilinear (the official mask resize).

Pillow cases: in_<name>.png (RGB) and out_<name>.png = Image.resize(resize_shape(h, w,
1024), BILINEAR), both lossless PNG. Torch cases: the input is generated from an integer
hash (see hash_map) so Rust can rebuild it exactly; outputs are stored in full when small
and as a positional checksum plus sampled values when large. manifest.json lists all.

Usage: python3 tools/make_resize_fixtures.py [outdir]
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "resize")


def resize_shape(h, w, target=1024):
    # ResizeLongestSide.get_preprocess_shape
    scale = target * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def noise_image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth_image(rng, h, w):
    """Gradients and hard-edged discs (compresses well) plus noise in a few patches."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(20, 200)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    img = img.astype(np.uint8)
    for _ in range(6):
        py, px = rng.integers(0, h - 64), rng.integers(0, w - 64)
        img[py:py + 64, px:px + 64] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return img


def hash_map(n):
    """Exactly representable pseudo-random f32 values in [-8, 8): Rust recomputes them."""
    i = np.arange(n, dtype=np.uint64)
    v = ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(8)
    return (v.astype(np.float64) / 2**20 - 8.0).astype(np.float32)


def checksum(a):
    """Positional checksum of f32 bit patterns: (sum bits, sum bits*(i+1)) mod 2^64."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).ravel().astype(np.uint64)
    idx = np.arange(1, bits.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return [str(int(bits.sum(dtype=np.uint64))), str(int((bits * idx).sum(dtype=np.uint64)))]


def samples(a, rng, k=200):
    flat = np.ascontiguousarray(a, dtype=np.float32).ravel()
    idx = np.sort(rng.choice(flat.size, size=min(k, flat.size), replace=False))
    return [[int(i), int(flat[i:i + 1].view(np.uint32)[0])] for i in idx]


def save_full(name, a):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(a, dtype=np.float32))
    return name


def raw_png(w, h, bitdepth, colortype, rows, extra=b""):
    """A PNG written by hand, for pixel formats Pillow cannot save (16-bit LA, 2-bit grey)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, bitdepth, colortype, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def decode_fixtures(rng, manifest):
    """Files in unusual pixel formats, each with what Pillow's convert("RGB") makes of it."""
    h, w = 13, 17
    rgb = noise_image(rng, h, w)
    a8 = rng.integers(0, 256, (h, w), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
    g16[0, :8] = [0, 1, 254, 255, 256, 257, 1000, 65535]
    files = {}

    def pil(img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        return b.getvalue()

    files["gray8.png"] = pil(Image.fromarray(rgb[..., 0]), "PNG")
    files["la8.png"] = pil(Image.fromarray(np.stack([rgb[..., 0], a8], -1), "LA"), "PNG")
    files["rgba8.png"] = pil(Image.fromarray(np.dstack([rgb, a8]), "RGBA"), "PNG")
    pal = Image.fromarray(rgb).quantize(16)
    files["palette.png"] = pil(pal, "PNG")
    files["palette_trns.png"] = pil(pal, "PNG", transparency=3)
    files["gray16.png"] = pil(Image.fromarray(g16), "PNG")
    be = lambda a: a.astype(">u2").tobytes()
    rgb16 = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    files["rgb16.png"] = raw_png(w, h, 16, 2, [be(r) for r in rgb16])
    la16 = np.stack([g16, g16[::-1]], -1)
    files["la16.png"] = raw_png(w, h, 16, 4, [be(r) for r in la16])
    files["gray16_trns.png"] = raw_png(
        w, h, 16, 0, [be(r) for r in g16],
        extra=struct.pack(">I", 2) + b"tRNS" + struct.pack(">H", 1000)
        + struct.pack(">I", zlib.crc32(b"tRNS" + struct.pack(">H", 1000))))
    g2 = rng.integers(0, 4, (h, 16), dtype=np.uint8)
    files["gray2.png"] = raw_png(16, h, 2, 0, [bytes(
        (r[i] << 6) | (r[i + 1] << 4) | (r[i + 2] << 2) | r[i + 3] for i in range(0, 16, 4))
        for r in g2])
    files["bilevel.png"] = pil(Image.fromarray(rgb[..., 0] > 127), "PNG")
    files["rgb.bmp"] = pil(Image.fromarray(rgb), "BMP")
    files["rgb.tiff"] = pil(Image.fromarray(rgb), "TIFF")
    files["palette.gif"] = pil(pal, "GIF")
    files["palette_trns.gif"] = pil(pal, "GIF", transparency=3)
    files["anim.gif"] = pil(pal, "GIF", save_all=True,
                            append_images=[Image.fromarray(255 - rgb).quantize(16)])
    files["rgb_lossless.webp"] = pil(Image.fromarray(rgb), "WEBP", lossless=True)
    smooth = smooth_image(rng, 96, 128)
    files["rgb_q90.jpg"] = pil(Image.fromarray(smooth), "JPEG", quality=90)
    files["rgb_q75_444.jpg"] = pil(Image.fromarray(smooth), "JPEG", quality=75, subsampling=0)
    files["gray.jpg"] = pil(Image.fromarray(smooth[..., 1]), "JPEG", quality=90)
    # Progressive with 4:2:2 chroma, and an odd size (partial MCUs, edge upsampling).
    files["rgb_progressive_422.jpg"] = pil(Image.fromarray(smooth), "JPEG", quality=85,
                                           subsampling=1, progressive=True)
    files["rgb_odd_420.jpg"] = pil(Image.fromarray(smooth[:93, :121]), "JPEG", quality=92)
    files["rgb_lossy.webp"] = pil(Image.fromarray(smooth), "WEBP", quality=80)
    for name, data in files.items():
        with open(os.path.join(OUT, "dec_" + name), "wb") as f:
            f.write(data)
        expected = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
        np.save(os.path.join(OUT, "dec_" + name + ".npy"), expected)
        manifest["decode"].append({"file": "dec_" + name, "mode": Image.open(io.BytesIO(data)).mode})


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    manifest = {"torch_version": torch.__version__, "pillow_version": Image.__version__,
                "torch_threads": torch.get_num_threads(), "pillow": [], "torch_resize": [],
                "postprocess": [], "decode": []}
    decode_fixtures(rng, manifest)

    # (name, h, w, generator): upscale, downscale, single-pass and heavy-shrink cases.
    cases = [
        ("tiny_5x7", 5, 7, noise_image),
        ("up_451x300", 451, 300, smooth_image),
        ("down_1500x1125", 1500, 1125, smooth_image),
        ("hpass_1x1023", 1, 1023, noise_image),
        ("vpass_1023x1", 1023, 1, noise_image),
        ("shrink_1700x37", 1700, 37, noise_image),
        ("square_1100x1100", 1100, 1100, smooth_image),
    ]
    for name, h, w, gen in cases:
        img = gen(rng, h, w)
        nh, nw = resize_shape(h, w)
        out = np.array(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
        Image.fromarray(img).save(os.path.join(OUT, f"in_{name}.png"), optimize=True)
        Image.fromarray(out).save(os.path.join(OUT, f"out_{name}.png"), optimize=True)
        manifest["pillow"].append({"name": name, "h": h, "w": w, "out_h": nh, "out_w": nw})

    # Direct single-channel F.interpolate cases (generic and channels-last kernels).
    for ih, iw, oh, ow in [(256, 256, 1024, 1024), (17, 23, 61, 53), (300, 451, 61, 53),
                           (300, 451, 200, 333), (683, 1024, 1500, 2250)]:
        x = torch.from_numpy(hash_map(ih * iw).reshape(1, 1, ih, iw))
        y = F.interpolate(x, (oh, ow), mode="bilinear", align_corners=False)[0, 0].numpy()
        entry = {"in_h": ih, "in_w": iw, "out_h": oh, "out_w": ow, "checksum": checksum(y),
                 "samples": samples(y, rng)}
        if y.size <= 20000:
            entry["full"] = save_full(f"torch_{ih}x{iw}_to_{oh}x{ow}.npy", y)
        manifest["torch_resize"].append(entry)

    # Sam.postprocess_masks: (channels, original (h, w), torch threads).
    for c, (oh, ow), threads in [(3, (300, 451), 0), (3, (1500, 2250), 0), (3, (40, 30), 0),
                                 (1, (2000, 3), 0), (3, (1024, 700), 0), (3, (300, 451), 1)]:
        prev = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        ih, iw = resize_shape(oh, ow)
        low = torch.from_numpy(hash_map(c * 256 * 256).reshape(1, c, 256, 256))
        m = F.interpolate(low, (1024, 1024), mode="bilinear", align_corners=False)
        m = m[..., :ih, :iw]
        m = F.interpolate(m, (oh, ow), mode="bilinear", align_corners=False)[0].numpy()
        used = torch.get_num_threads()
        torch.set_num_threads(prev)
        entry = {"c": c, "input_h": ih, "input_w": iw, "orig_h": oh, "orig_w": ow,
                 "torch_threads": used, "checksum": checksum(m), "samples": samples(m, rng)}
        if m.size <= 20000:
            entry["full"] = save_full(f"post_{c}x{oh}x{ow}_t{used}.npy", m)
        manifest["postprocess"].append(entry)

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
