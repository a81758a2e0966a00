#!/usr/bin/env python3
"""Dev parity oracle for the prompt encoder and mask decoder.

Builds the official segment_anything PromptEncoder and MaskDecoder(TwoWayTransformer) with
every parameter randomised and rounded to float16-representable values, runs a set of
prompts against a random image embedding, and writes everything as raw little-endian f32
files plus index.json into OUT_DIR:

    python3 tools/check_decoder.py OUT_DIR [--seed N]
    SAMRT_DECODER_PARITY_DIR=OUT_DIR cargo test --release --test decoder -- --nocapture

index.json: {"weights": {name: {"file", "shape"}}, "image_embedding": {...},
"dense_pe": {...}, "cases": [{"name", "points", "labels", "box", "mask", "sparse",
"n_sparse", "dense", "low_res", "iou", "f32_vs_f64"}]}. points/labels/box are inline lists
(coordinates in the 1024 input frame); the rest are {"file", "shape"} entries; f32_vs_f64 is
the official model's own float32-vs-float64 gap on the case (a conditioning check).
"""
import argparse
import copy
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch


def import_modeling():
    """The official package's __init__ imports the predictor, which needs torchvision; the
    modeling modules themselves do not, so load them under a bare package stub."""
    try:
        from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
        return MaskDecoder, PromptEncoder, TwoWayTransformer
    except ImportError:
        for k in [k for k in sys.modules if k.startswith("segment_anything")]:
            del sys.modules[k]
    spec = importlib.util.find_spec("segment_anything")
    pkg = types.ModuleType("segment_anything")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["segment_anything"] = pkg
    from segment_anything.modeling.mask_decoder import MaskDecoder
    from segment_anything.modeling.prompt_encoder import PromptEncoder
    from segment_anything.modeling.transformer import TwoWayTransformer
    return MaskDecoder, PromptEncoder, TwoWayTransformer


def f16(t):
    return t.to(torch.float16).to(torch.float32)


# Top-level modules/buffers drawn ~N(0, 1), as nn.Embedding and the Fourier matrix are.
EMBEDDINGS = {"pe_layer", "point_embeddings", "not_a_point_embed", "no_mask_embed",
              "iou_token", "mask_tokens"}


def randomise(module, gen, gain):
    """Every parameter and buffer random, f16-rounded, none zero. Linear/conv weights are
    uniform +-gain/sqrt(fan_in): gain 1 is PyTorch's default bound (mask logits then stay
    within +-0.5, a weak test), sqrt(3) keeps unit variance (logits of several units)."""
    with torch.no_grad():
        for name, p in list(module.named_parameters()) + list(module.named_buffers()):
            is_norm = p.dim() == 1 and ("norm" in name or "upscaling.1." in name
                                         or "downscaling.1." in name or "downscaling.4." in name)
            if is_norm and name.endswith("weight"):
                v = 1.0 + 0.2 * (torch.rand(p.shape, generator=gen) * 2 - 1)
            elif is_norm:
                v = 0.1 * (torch.rand(p.shape, generator=gen) * 2 - 1)
            elif name.split(".")[0] in EMBEDDINGS:
                v = torch.randn(p.shape, generator=gen)
            else:
                # Linear/conv weight or bias: +-1/sqrt(true reduction size).
                w = p if name.endswith("weight") else dict(module.named_parameters())[
                    name[: -len("bias")] + "weight"]
                if "output_upscaling" in name:  # ConvTranspose2d weight [in, out, k, k]
                    fan = w.shape[0]
                else:
                    fan = int(np.prod(w.shape[1:]))
                v = (torch.rand(p.shape, generator=gen) * 2 - 1) / np.sqrt(fan)
                if name.endswith("weight"):
                    v = v * gain
            v = f16(v)
            v[v == 0] = 2.0 ** -14
            p.copy_(v)


def save(out_dir, name, t):
    a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
    fn = name.replace("/", "_") + ".f32"
    a.tofile(os.path.join(out_dir, fn))
    return {"file": fn, "shape": list(a.shape)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--gain", type=float, default=3 ** 0.5)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    MaskDecoder, PromptEncoder, TwoWayTransformer = import_modeling()

    dim, grid, img = 256, 64, 1024
    pe = PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid),
                       input_image_size=(img, img), mask_in_chans=16).eval()
    md = MaskDecoder(num_multimask_outputs=3,
                     transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=2048,
                                                   num_heads=8),
                     transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=256).eval()
    randomise(pe, gen, args.gain)
    randomise(md, gen, args.gain)

    md64 = copy.deepcopy(md).double()
    index = {"weights": {}, "cases": []}
    for prefix, m in (("prompt_encoder", pe), ("mask_decoder", md)):
        for name, t in m.state_dict().items():
            index["weights"][f"{prefix}.{name}"] = save(args.out_dir, f"w.{prefix}.{name}", t)

    image = f16(torch.randn((1, dim, grid, grid), generator=gen) * 0.5)
    index["image_embedding"] = save(args.out_dir, "image_embedding", image[0])
    with torch.no_grad():
        dense_pe = pe.get_dense_pe()
    index["dense_pe"] = save(args.out_dir, "dense_pe", dense_pe[0])

    # A smooth blob of logits, like a previous low-res prediction, with some noise.
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    blob = 8.0 - torch.sqrt((yy - 110.0) ** 2 + (xx - 140.0) ** 2) / 6.0
    blob = f16(blob + torch.randn((256, 256), generator=gen))

    cases = [
        ("point", [[500.25, 380.75]], [1], None, None),
        ("points_bg", [[500.0, 380.0], [200.5, 700.0], [900.0, 20.0]], [1, 0, 0], None, None),
        ("box", [], [], [100.0, 150.0, 600.0, 700.0], None),
        ("box_point", [[350.0, 420.0]], [1], [100.0, 150.0, 600.0, 700.0], None),
        ("mask_point", [[560.0, 440.0]], [1], None, blob),
        ("pad_label", [[10.0, 1000.0], [0.0, 0.0]], [0, -1], None, None),
    ]
    for name, pts, labels, box, mask in cases:
        points = None
        if pts:
            points = (torch.tensor([pts], dtype=torch.float32),
                      torch.tensor([labels], dtype=torch.int64))
        boxes = None if box is None else torch.tensor([box], dtype=torch.float32)
        masks = None if mask is None else mask[None, None]
        with torch.no_grad():
            sparse, dense = pe(points=points, boxes=boxes, masks=masks)
            low_res, iou = md.predict_masks(image_embeddings=image, image_pe=dense_pe,
                                            sparse_prompt_embeddings=sparse,
                                            dense_prompt_embeddings=dense)
            # Conditioning check: the same model in float64. If f32 and f64 disagree by more
            # than the parity tolerance, the weights are ill-conditioned and the comparison
            # with our f32 result means little.
            low64, _ = md64.predict_masks(image_embeddings=image.double(),
                                          image_pe=dense_pe.double(),
                                          sparse_prompt_embeddings=sparse.double(),
                                          dense_prompt_embeddings=dense.double())
        f64_diff = (low64 - low_res.double()).abs().max().item()
        c = {"name": name, "f32_vs_f64": f64_diff, "points": pts, "labels": labels, "box": box,
             "mask": None if mask is None else save(args.out_dir, f"{name}.mask", mask),
             "sparse": save(args.out_dir, f"{name}.sparse", sparse[0]),
             "n_sparse": int(sparse.shape[1]),
             "dense": save(args.out_dir, f"{name}.dense", dense[0]),
             "low_res": save(args.out_dir, f"{name}.low_res", low_res[0]),
             "iou": save(args.out_dir, f"{name}.iou", iou[0])}
        index["cases"].append(c)
        print(f"{name}: n_sparse {c['n_sparse']}, logits range "
              f"[{low_res.min():.3f}, {low_res.max():.3f}], official f32 vs f64 {f64_diff:.2e}")
    with open(os.path.join(args.out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    print(f"wrote {len(index['weights'])} weights and {len(cases)} cases to {args.out_dir}")


if __name__ == "__main__":
    main()
