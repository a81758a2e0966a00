#!/usr/bin/env python3
"""Official-encoder references for image sizes other than 1024 (tests/fixtures/encoder_img_size/).

The official `ImageEncoderViT` sizes `pos_embed` to the patch grid G = img_size / 16 and gives
global blocks (`global_attn_indexes`) `[2G-1, hd]` rel-pos tables, windowed blocks
`[2*14-1, hd]`; windowed blocks zero-pad the grid up to a multiple of the window (16 -> 28 at
img_size 256, 8 -> 14 at 128). samrt infers all of that from the shapes; this script writes
what it is checked against:

- one directory per case (`vit256`, `vit128`): a small official-shaped encoder (embed 64,
  depth 4, 2 heads of 32, global blocks (1, 3), window 14, out_chans 64) with random
  fp16-representable weights, saved with torch.save as `encoder.pth` (f16 storages; only
  `image_encoder.*`); the input image as u8 `image.npy` [h, w, 3] (coffee.png resized so its
  longest side is img_size, as `ResizeLongestSide` would, padded at the bottom by the test);
  the official encoder's output run in float64 (`out_f64.npy`) and in float32
  (`out_f32.npy`); `case.json` with the constructor arguments and the official float32 error.
- `sam_shapes.json`: state-dict names and shapes of a whole official `Sam` (vit_b, built as
  `build_sam.py::_build_sam` with its image_size changed) at image sizes 256, 128 and 224,
  with the global indexes the constructor was given. 224 is the ambiguous case: grid 14 ==
  window 14, so windowed and global blocks have the same [27, hd] tables; the script checks
  (in float64) that the official encoder gives the same output either way.

Run from anywhere: `python3 tools/make_encoder_img_size_fixtures.py` (about 10 s; needs torch,
numpy, Pillow and segment_anything). Deterministic: fixed seeds, one torch thread.

The same comparison for a full vit_b-sized encoder (too big to commit):
`python3 tools/make_encoder_img_size_fixtures.py --vit-b DIR [--img 256]` writes one case
directory DIR in the same layout (embed 768, depth 12, 12 heads, global (2, 5, 8, 11)); then
`SAMRT_IMG_SIZE_PARITY_DIR=DIR cargo test --release --test image_encoder img_size_parity -- \
--nocapture` checks samrt against it.

Weights ("trained-ViT-like" conditioning, fp16-representable):
- Linear and conv weights N(0, 1/fan_in), except: q and k rows x1.5 (attention logits with
  std ~2, peaked like a trained ViT's rather than near-uniform), and the residual-branch
  output projections (attn.proj, mlp.lin2) x1/sqrt(2*depth), so each block adds a small
  update to the residual stream instead of replacing it (as in trained ViTs / GPT-2 init).
- LayerNorm weights 1 + 0.2 N, biases 0.1 N; other biases 0.1 N.
- rel_pos 0.15 N (tools/make_fixtures.py: level with the content logits).
- pos_embed 0.5 x a smooth random field + 0.1 N (tools/make_fixtures.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import OrderedDict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_encoder_common import official_encoder_class  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "encoder_img_size"
IMAGE = ROOT / "tests" / "fixtures" / "images" / "coffee.png"
SEED = 20261201
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]

SCALE_QK = 1.5
SCALE_LN_W = 0.2
SCALE_BIAS = 0.1
SCALE_REL_POS = 0.15
SCALE_POS_EMBED = 0.5
SCALE_POS_EMBED_IID = 0.1

SMALL = dict(embed_dim=64, depth=4, num_heads=2, global_attn_indexes=[1, 3], window_size=14,
             out_chans=64)
VIT_B = dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=[2, 5, 8, 11],
             window_size=14, out_chans=256)
# Fixture size budget for this directory (the repository's fixtures are large already).
BUDGET_BYTES = 3 * 1000 * 1000


def build_encoder(cfg: dict, img_size: int) -> torch.nn.Module:
    """The encoder exactly as `build_sam.py::_build_sam` constructs it, at `img_size`."""
    return official_encoder_class()(
        depth=cfg["depth"],
        embed_dim=cfg["embed_dim"],
        img_size=img_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg["num_heads"],
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        rel_pos_zero_init=True,
        global_attn_indexes=cfg["global_attn_indexes"],
        window_size=cfg["window_size"],
        out_chans=cfg["out_chans"],
    ).eval()


def random_state(enc: torch.nn.Module, depth: int, seed: int) -> dict:
    """Seeded, fp16-representable values for every state-dict tensor (see module doc)."""
    gen = torch.Generator().manual_seed(seed)
    resid = 1.0 / math.sqrt(2 * depth)
    out = {}
    for name, t in enc.state_dict().items():
        z = torch.randn(t.shape, generator=gen, dtype=torch.float64)
        if name.endswith(("norm1.weight", "norm2.weight", "neck.1.weight", "neck.3.weight")):
            v = 1.0 + SCALE_LN_W * z
        elif name.endswith("rel_pos_h") or name.endswith("rel_pos_w"):
            v = SCALE_REL_POS * z
        elif name == "pos_embed":
            coarse = torch.randn((1, t.shape[3], 8, 8), generator=gen, dtype=torch.float64)
            field = torch.nn.functional.interpolate(
                coarse, size=t.shape[1:3], mode="bicubic", align_corners=True)
            field = field.permute(0, 2, 3, 1) / field.std()
            v = SCALE_POS_EMBED * field + SCALE_POS_EMBED_IID * z
        elif name.endswith("bias"):
            v = SCALE_BIAS * z
        elif name.endswith("weight"):
            fan_in = t[0].numel()
            v = z / math.sqrt(fan_in)
            if name.endswith("attn.qkv.weight"):
                d = t.shape[1]
                v[: 2 * d] *= SCALE_QK
            elif name.endswith(("attn.proj.weight", "mlp.lin2.weight")):
                v = v * resid
        else:
            raise RuntimeError(f"no rule for {name} {tuple(t.shape)}")
        out[name] = v.to(torch.float16)
    return out


def load_image(img_size: int) -> np.ndarray:
    """coffee.png with its longest side resized to img_size (PIL bilinear), u8 [h, w, 3]."""
    im = Image.open(IMAGE).convert("RGB")
    scale = img_size / max(im.width, im.height)
    w, h = int(im.width * scale + 0.5), int(im.height * scale + 0.5)
    return np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.uint8)


def encoder_input(img: np.ndarray, img_size: int, dtype: torch.dtype) -> torch.Tensor:
    """`Sam.preprocess`: (x - mean) / std in `dtype`, then zero padding at the bottom/right."""
    x = torch.as_tensor(img.copy()).permute(2, 0, 1).to(dtype)
    mean = torch.tensor(PIXEL_MEAN, dtype=dtype).view(-1, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=dtype).view(-1, 1, 1)
    x = (x - mean) / std
    h, w = x.shape[-2:]
    x = torch.nn.functional.pad(x, (0, img_size - w, 0, img_size - h))
    return x[None]


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def write_case(out: Path, cfg: dict, img_size: int, seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    enc = build_encoder(cfg, img_size)
    sd16 = random_state(enc, cfg["depth"], seed)
    torch.save(OrderedDict((f"image_encoder.{k}", v) for k, v in sd16.items()),
               out / "encoder.pth")
    img = load_image(img_size)
    np.save(out / "image.npy", img)

    outs = {}
    for dtype in (torch.float64, torch.float32):
        e = build_encoder(cfg, img_size).to(dtype)
        e.load_state_dict({k: v.to(dtype) for k, v in sd16.items()}, strict=True)
        with torch.no_grad():
            outs[dtype] = e(encoder_input(img, img_size, dtype))[0].numpy()
    y64, y32 = outs[torch.float64], outs[torch.float32]
    np.save(out / "out_f64.npy", y64)
    np.save(out / "out_f32.npy", y32)
    g = img_size // 16
    case = dict(cfg, img_size=img_size, grid=g, image_hw=list(img.shape[:2]),
                pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD, seed=seed,
                torch=torch.__version__,
                official_f32_vs_f64=dict(rel_l2=rel_l2(y32, y64),
                                         max_abs=float(np.abs(y32 - y64).max())),
                output_std=float(y64.std()))
    with open(out / "case.json", "w") as f:
        json.dump(case, f, indent=1)
    print(f"{out}: img {img_size} grid {g}, image {img.shape[:2]}, output {y64.shape} "
          f"std {y64.std():.3f}; official f32 vs f64: rel L2 {case['official_f32_vs_f64']['rel_l2']:.3e}, "
          f"max abs {case['official_f32_vs_f64']['max_abs']:.3e}")
    return case


def sam_listing(img_size: int) -> dict:
    """Names, shapes and parameter count of a whole official vit_b Sam at img_size."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    g = img_size // 16
    sam = Sam(
        image_encoder=build_encoder(VIT_B, img_size),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(g, g),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD)
    return {
        "img_size": img_size,
        "global_attn_indexes": VIT_B["global_attn_indexes"],
        "window_size": VIT_B["window_size"],
        "tensors": [[k, list(v.shape)] for k, v in sam.state_dict().items()],
        "params": sum(p.numel() for p in sam.parameters()),
    }


def check_ambiguous() -> float:
    """Grid == window (img 224): the same weights as global or as windowed blocks agree."""
    cfg = dict(SMALL)
    a = build_encoder(cfg, 224).double()
    b = build_encoder(dict(cfg, global_attn_indexes=[0, 1, 2, 3]), 224).double()
    sd = random_state(a, cfg["depth"], SEED + 7)
    a.load_state_dict({k: v.double() for k, v in sd.items()})
    b.load_state_dict({k: v.double() for k, v in sd.items()})
    x = encoder_input(load_image(224), 224, torch.float64)
    with torch.no_grad():
        diff = (a(x) - b(x)).abs().max().item()
    print(f"img 224 (grid 14 == window 14): global (1, 3) vs all global, float64 max |diff| "
          f"{diff:.2e}")
    assert diff < 1e-12, diff
    return diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vit-b", metavar="DIR", help="write one full vit_b-sized case to DIR")
    ap.add_argument("--img", type=int, default=256, help="image size for --vit-b")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.vit_b:
        write_case(Path(a.vit_b), VIT_B, a.img, SEED + 100)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    for i, (name, img) in enumerate((("vit256", 256), ("vit128", 128))):
        write_case(OUT / name, SMALL, img, SEED + i)
    diff = check_ambiguous()
    listings = {f"vit_b_{s}": sam_listing(s) for s in (256, 128, 224)}
    listings["note"] = (
        "official Sam (vit_b) state-dict shapes at other image sizes; vit_b_224 has grid == "
        f"window, where global and windowed blocks agree (float64 max |diff| {diff:.1e})")
    with open(OUT / "sam_shapes.json", "w") as f:
        json.dump(listings, f, indent=0)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {size / 1e6:.2f} MB (budget {BUDGET_BYTES / 1e6:.1f})")
    if size > BUDGET_BYTES:
        sys.exit("over the size budget")


if __name__ == "__main__":
    main()
