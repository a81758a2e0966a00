"""Writes a parity case for the Rust image encoder: builds the official ImageEncoderViT
with a small config, randomises every parameter (rel-pos tables included), runs a random
input, and saves weights, input, per-block token maps and output as raw little-endian f32.

Usage: python3 tools/check_encoder.py OUT_DIR [--embed 160 --depth 4 --heads 2
       --global 1,3 --window 14 --img 1024 --seed 0]
Then: SAMRT_ENCODER_PARITY_DIR=OUT_DIR cargo test --release --test image_encoder parity
"""
import argparse
import os
import sys
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_encoder_common import official_encoder_class  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--embed", type=int, default=160)
ap.add_argument("--depth", type=int, default=4)
ap.add_argument("--heads", type=int, default=2)
ap.add_argument("--global", dest="glob", default="1,3")
ap.add_argument("--window", type=int, default=14)
ap.add_argument("--img", type=int, default=1024)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

torch.manual_seed(a.seed)
glob = [int(v) for v in a.glob.split(",") if v != ""]
enc = official_encoder_class()(
    depth=a.depth, embed_dim=a.embed, img_size=a.img, mlp_ratio=4,
    norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=a.heads, patch_size=16,
    qkv_bias=True, use_rel_pos=True, global_attn_indexes=glob, window_size=a.window,
    out_chans=256,
).eval()

with torch.no_grad():
    for name, p in enc.named_parameters():
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name in (
            "neck.1.weight", "neck.3.weight"):
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        elif p.dim() == 1:
            p.copy_(0.05 * torch.randn_like(p))
        elif "rel_pos" in name:
            p.copy_(0.3 * torch.randn_like(p))
        elif name == "pos_embed":
            p.copy_(0.1 * torch.randn_like(p))
        else:
            fan_in = p[0].numel()
            p.copy_(torch.randn_like(p) / fan_in ** 0.5)

os.makedirs(a.out, exist_ok=True)
with open(os.path.join(a.out, "index.txt"), "w") as idx:
    for name, p in enc.state_dict().items():
        fn = "w_" + name.replace(".", "_") + ".bin"
        p.detach().numpy().astype("<f4").tofile(os.path.join(a.out, fn))
        idx.write(f"image_encoder.{name} {fn} {','.join(str(s) for s in p.shape)}\n")
with open(os.path.join(a.out, "config.txt"), "w") as f:
    f.write(f"embed_dim={a.embed}\ndepth={a.depth}\nnum_heads={a.heads}\n"
            f"global={','.join(map(str, glob))}\nwindow_size={a.window}\nimg_size={a.img}\n")

x = torch.randn(1, 3, a.img, a.img)
x.numpy().astype("<f4").tofile(os.path.join(a.out, "input.bin"))
with torch.no_grad():
    t = enc.patch_embed(x) + enc.pos_embed
    t.numpy().astype("<f4").tofile(os.path.join(a.out, "embed.bin"))
    for i, blk in enumerate(enc.blocks):
        t = blk(t)
        t.numpy().astype("<f4").tofile(os.path.join(a.out, f"block{i}.bin"))
    y = enc.neck(t.permute(0, 3, 1, 2))
    y2 = enc(x)
    assert torch.equal(y, y2), "manual forward differs from module forward"
y.numpy().astype("<f4").tofile(os.path.join(a.out, "output.bin"))
print(f"wrote {a.out}: output {tuple(y.shape)}, |y| mean {y.abs().mean():.4f}")
