#!/usr/bin/env python3
"""Writes the small torch.save fixtures in tests/fixtures/pth/ and their expected values.

Run from the repository root: `python3 tools/make_pth_fixtures.py`. Needs torch and, for the
shape listings, segment_anything. The expected f16 bits come from torch's own f32/bf16 -> f16
conversion (round to nearest even), so the Rust reader is checked against PyTorch, not
against itself.
"""
import collections
import io
import json
import os
import zipfile

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "pth")

# f32 values that exercise rounding: ties to even (1 + 2^-11 -> 1, 1 + 3*2^-11 -> 1 + 2^-9),
# values just under the f16 maximum, f16 subnormals, underflow to zero, signs.
TRICKY = [
    1.0 + 2.0**-11,
    1.0 + 3.0 * 2.0**-11,
    -(1.0 + 2.0**-11),
    65504.0,
    65519.0,
    -65519.0,
    6.0e-8,
    1.0e-6,
    -3.0e-5,
    1.0e-9,
    0.1,
    -2.7182817,
]


def ramp(n, dtype, scale=0.37, shift=-1.3):
    return (torch.arange(n, dtype=torch.float64) * scale + shift).to(dtype)


def f32_dict():
    sd = collections.OrderedDict()
    sd["layer.weight"] = ramp(6, torch.float32).reshape(2, 3)
    sd["layer.bias"] = torch.tensor([0.5, -0.25, 3.0], dtype=torch.float32)
    sd["tricky"] = torch.tensor(TRICKY, dtype=torch.float32)
    sd["scalar"] = torch.tensor(2.5, dtype=torch.float32)
    sd["empty"] = torch.zeros(0, 4, dtype=torch.float32)
    sd["conv.weight"] = ramp(2 * 3 * 2 * 2, torch.float32, 0.011, -0.13).reshape(2, 3, 2, 2)
    return sd


def f16_dict():
    sd = collections.OrderedDict()
    sd["a"] = ramp(8, torch.float16, 0.125, -0.5).reshape(2, 4)
    sd["b"] = torch.tensor([65504.0, -0.0009765625, 6.0e-8, 3.140625], dtype=torch.float16)
    return sd


def bf16_dict():
    sd = collections.OrderedDict()
    sd["x"] = ramp(6, torch.bfloat16, 0.3, -0.8).reshape(3, 2)
    # 1 + 2^-7 is exact in bf16 and in f16; 3.0e38 overflows f16 (tested separately).
    sd["y"] = torch.tensor([1.0 + 2.0**-7, -1.0e-3, 256.0, 1.0e-7], dtype=torch.bfloat16)
    return sd


def views_dict():
    base = ramp(4 * 6, torch.float32, 0.25, -2.0).reshape(4, 6)
    sd = collections.OrderedDict()
    sd["sliced"] = base[1:, ::2]  # storage offset 6, strides (6, 2)
    sd["transposed"] = base.t()  # strides (1, 6)
    sd["tail"] = base.reshape(-1)[5:]  # offset only, contiguous
    sd["expanded"] = torch.tensor([1.5, -2.5, 4.0]).expand(2, 3)  # stride 0
    sd["same_storage"] = base  # shares the storage of the first three
    half_base = ramp(12, torch.float16, 0.5, -3.0).reshape(3, 4)
    sd["half_view"] = half_base[:, 1:3]
    return sd


def expected(sd):
    out = []
    for name, t in sd.items():
        h = t.contiguous().to(torch.float16)
        out.append(
            {
                "name": name,
                "shape": list(t.shape),
                "f16_bits": [int(v) & 0xFFFF for v in h.reshape(-1).view(torch.int16).tolist()],
            }
        )
    return out


def rewrite_zip(src, dst, prefix, compression=zipfile.ZIP_STORED, force_zip64=False):
    """Copies a torch zip under another archive prefix, optionally forcing ZIP64 records."""
    old_limit, old_count = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    if force_zip64:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 0, 0
    try:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
            for info in zin.infolist():
                rest = info.filename.split("/", 1)[1]
                zout.writestr(prefix + "/" + rest, zin.read(info.filename))
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = old_limit, old_count


def save(sd, name, **kw):
    path = os.path.join(OUT, name)
    torch.save(sd, path, **kw)
    return path


def shape_listings():
    """Official state-dict names and shapes, built without loading any checkpoint."""
    from functools import partial

    from segment_anything import sam_model_registry
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    def listing(model):
        sd = model.state_dict()
        return {
            "params": sum(p.numel() for p in model.parameters()),
            "tensors": [[k, list(v.shape)] for k, v in sd.items()],
        }

    out = {}
    for name in ["vit_b", "vit_l", "vit_h"]:
        out[name] = listing(sam_model_registry[name]())
    # A non-standard encoder: 4 blocks, D=160, head_dim 80, global blocks 1 and 3.
    custom = Sam(
        image_encoder=ImageEncoderViT(
            depth=4,
            embed_dim=160,
            img_size=1024,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=2,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=[1, 3],
            window_size=14,
            out_chans=256,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(64, 64),
            input_image_size=(1024, 1024),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    out["custom_4x160"] = listing(custom)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    exp = {}
    for name, sd in [
        ("f32.pth", f32_dict()),
        ("f16.pth", f16_dict()),
        ("bf16.pth", bf16_dict()),
        ("views.pth", views_dict()),
    ]:
        save(sd, name)
        exp[name] = expected(sd)

    # The f32 file re-packed with ZIP64 records everywhere and another archive prefix.
    rewrite_zip(os.path.join(OUT, "f32.pth"), os.path.join(OUT, "zip64.pth"), "renamed", force_zip64=True)
    exp["zip64.pth"] = exp["f32.pth"]

    # Files that must be rejected with a clear error.
    rewrite_zip(os.path.join(OUT, "f16.pth"), os.path.join(OUT, "deflated.pth"), "deflated", zipfile.ZIP_DEFLATED)
    save({"w": torch.tensor([1.0, 1.0e6])}, "overflow.pth")
    save({"model": f16_dict()}, "nested.pth")
    save(collections.OrderedDict(p=torch.nn.Parameter(torch.tensor([1.25, -0.5]))), "parameter.pth")
    exp["parameter.pth"] = [{"name": "p", "shape": [2], "f16_bits": [0x3D00, 0xB800]}]
    save({"i": torch.arange(3)}, "int64.pth")
    # One stored element broadcast to 2^40: must be refused, not allocated.
    save({"bomb": torch.tensor([1.0]).expand(1 << 20, 1 << 20)}, "broadcast_bomb.pth")
    legacy = io.BytesIO()
    torch.save({"w": torch.tensor([1.0])}, legacy, _use_new_zipfile_serialization=False)
    with open(os.path.join(OUT, "legacy.pth"), "wb") as f:
        f.write(legacy.getvalue())

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1)
        f.write("\n")
    with open(os.path.join(OUT, "sam_shapes.json"), "w") as f:
        json.dump(shape_listings(), f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
