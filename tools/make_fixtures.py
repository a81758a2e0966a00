#!/usr/bin/env python3
"""Build tests/fixtures/: a small random-weight SAM and reference outputs of the official code.

The model is the official `segment_anything` architecture (prompt encoder and mask decoder at
their official size, image encoder shrunk to embed_dim 160 / depth 4 / 2 heads of 80) with
every state-dict tensor randomised and rounded to fp16-representable values. Reference outputs
come from the official `SamPredictor` on real photos from scikit-image, so the Rust port is
checked against the code it has to match, not against a re-implementation.

Run from anywhere: `python3 tools/make_fixtures.py`. Deterministic (fixed seeds, one torch
thread). Needs torch, numpy, Pillow, scikit-image and segment_anything; torchvision is optional
(see `_ensure_torchvision`). tests/fixtures/pth/, tests/fixtures/resize/,
tests/fixtures/encoder_img_size/, tests/fixtures/amg/ and tests/fixtures/img_size/ are not
touched.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import types
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
IMG_DIR = FIX / "images"
OUT_DIR = FIX / "official"
MODEL_FILE = "sam_tiny.pth"

SEED = 20240601
ENC = dict(embed_dim=160, depth=4, num_heads=2, global_attn_indexes=[1, 3], window_size=14)

# Scales: linear/conv weights N(0, 1/fan_in) keep activations near unit variance; LayerNorm
# weights 1 + 0.2 N and biases 0.1 N keep every parameter visible in the output without
# swamping it; embeddings and the Fourier matrix are N(0, 1) like the official init.
SCALE_LN_W = 0.2
SCALE_BIAS = 0.1
# 0.15 puts the rel-pos logit terms (std ~1.4) level with the content term (std ~1); 0.5 made
# them 4.5x larger, so attention ignored the image.
SCALE_REL_POS = 0.15
# pos_embed = 0.5 * smooth field (8x8 noise, bicubic to 64x64) + 0.1 * iid noise: iid noise
# alone at 0.5 swamped the patch content and the masks came out as position noise.
SCALE_POS_EMBED = 0.5
SCALE_POS_EMBED_IID = 0.1
SCALE_EMBEDDING = 1.0
# The decoder's ConvTranspose2d taps share 95% of their variance across the 2x2 kernel; with
# independent taps every output mask was a 4x4-periodic dither with no image structure.
CONVT_TAP_SHARE = 0.95

# Strided views of the [256,64,64] tensors that are too big to store whole (4 MiB each).
DENSE_STRIDE = 7  # rows/cols 0,7,...,63: both corners included

# Size budget for tests/fixtures minus pth/, resize/, encoder_img_size/, amg/ and img_size/
# (owned by other generators, each with its own budget).
BUDGET_BYTES = 38 * 1024 * 1024


def _ensure_torchvision() -> str:
    """segment_anything's transforms import torchvision only for `resize` and `to_pil_image`.

    When torchvision is absent, provide those two with torchvision's exact PIL-path behaviour
    (torchvision 0.29 `F.resize` -> `F_pil.resize` -> `img.resize((w, h), BILINEAR)`, skipped
    when the size is unchanged). Verified bit-identical against real torchvision on every
    fixture image when this script was written.
    """
    try:
        import torchvision.transforms.functional  # noqa: F401

        return "torchvision " + __import__("torchvision").__version__
    except ImportError:
        pass

    def to_pil_image(pic, mode=None):
        if not (isinstance(pic, np.ndarray) and pic.ndim == 3 and pic.shape[2] == 3
                and pic.dtype == np.uint8):
            raise TypeError("shim to_pil_image supports only HxWx3 uint8 arrays")
        return Image.fromarray(np.ascontiguousarray(pic))

    def resize(img, size, interpolation=None, max_size=None, antialias=True):
        h, w = int(size[0]), int(size[1])
        if (img.height, img.width) == (h, w):
            return img
        return img.resize((w, h), Image.BILINEAR)

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def batched_nms(*_args, **_kwargs):
        # Only imported (segment_anything/__init__ pulls in the automatic mask generator);
        # this script never runs it, and a guessed NMS must not produce reference data.
        raise RuntimeError("batched_nms needs the real torchvision")

    mods = {n: types.ModuleType(n) for n in (
        "torchvision", "torchvision.transforms", "torchvision.transforms.functional",
        "torchvision.ops", "torchvision.ops.boxes")}
    mods["torchvision.transforms.functional"].resize = resize
    mods["torchvision.transforms.functional"].to_pil_image = to_pil_image
    mods["torchvision.ops.boxes"].box_area = box_area
    mods["torchvision.ops.boxes"].batched_nms = batched_nms
    for name, mod in mods.items():
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(mods[parent], child, mod)
    sys.modules.update(mods)
    return "shim (torchvision not installed)"


TV_SOURCE = _ensure_torchvision()

from segment_anything import SamPredictor  # noqa: E402
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)


# --------------------------------------------------------------------------------------------
# Model


def build_tiny_sam() -> Sam:
    """`build_sam.py::_build_sam` verbatim except for the encoder size."""
    prompt_embed_dim = 256
    image_size = 1024
    vit_patch_size = 16
    image_embedding_size = image_size // vit_patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=ENC["depth"],
            embed_dim=ENC["embed_dim"],
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=ENC["num_heads"],
            patch_size=vit_patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            rel_pos_zero_init=True,
            global_attn_indexes=ENC["global_attn_indexes"],
            window_size=ENC["window_size"],
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(image_embedding_size, image_embedding_size),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=prompt_embed_dim,
                mlp_dim=2048,
                num_heads=8,
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    sam.eval()
    return sam


def _param_kinds(sam: Sam) -> dict:
    """Map each state-dict name to (kind, fan_in) from the module that owns it."""
    from segment_anything.modeling.common import LayerNorm2d

    kinds = {}
    for mname, mod in sam.named_modules():
        pre = mname + "." if mname else ""
        if isinstance(mod, torch.nn.Linear):
            kinds[pre + "weight"] = ("weight", mod.in_features)
        elif isinstance(mod, torch.nn.ConvTranspose2d):
            # Stride == kernel: each output pixel sees exactly one tap of each input channel.
            kinds[pre + "weight"] = ("weight", mod.in_channels)
        elif isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            kinds[pre + "weight"] = ("weight", mod.in_channels * k)
        elif isinstance(mod, (torch.nn.LayerNorm, LayerNorm2d)):
            kinds[pre + "weight"] = ("ln_weight", None)
            kinds[pre + "bias"] = ("ln_bias", None)
        elif isinstance(mod, torch.nn.Embedding):
            kinds[pre + "weight"] = ("embedding", None)
    return kinds


def randomise(sam: Sam) -> dict:
    """Overwrite every state-dict tensor with seeded noise, rounded to fp16-representable f32."""
    gen = torch.Generator().manual_seed(SEED)
    kinds = _param_kinds(sam)
    convt = {n + ".weight" for n, m in sam.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)}
    sd = sam.state_dict()
    counts = {}
    new = {}
    for name, t in sd.items():
        z = torch.randn(t.shape, generator=gen, dtype=torch.float32)
        kind, fan_in = kinds.get(name, (None, None))
        if kind == "weight" and name in convt:
            i, o = t.shape[:2]
            shared = torch.randn((i, o, 1, 1), generator=gen, dtype=torch.float32)
            v = (CONVT_TAP_SHARE * shared + math.sqrt(1 - CONVT_TAP_SHARE**2) * z) / math.sqrt(fan_in)
            kind = "convT_weight"
        elif kind == "weight":
            v = z / math.sqrt(fan_in)
        elif kind == "ln_weight":
            v = 1.0 + SCALE_LN_W * z
        elif kind == "embedding":
            v = SCALE_EMBEDDING * z
        elif name.endswith("rel_pos_h") or name.endswith("rel_pos_w"):
            kind, v = "rel_pos", SCALE_REL_POS * z
        elif name.endswith("pos_embed"):
            coarse = torch.randn((1, t.shape[3], 8, 8), generator=gen, dtype=torch.float32)
            field = torch.nn.functional.interpolate(
                coarse, size=t.shape[1:3], mode="bicubic", align_corners=True
            )
            field = field.permute(0, 2, 3, 1) / field.std()
            kind, v = "pos_embed", SCALE_POS_EMBED * field + SCALE_POS_EMBED_IID * z
        elif name.endswith("positional_encoding_gaussian_matrix"):
            kind, v = "gaussian_pe", z  # the official init is randn * 1.0
        elif name.endswith("bias"):
            kind, v = "bias", SCALE_BIAS * z
        else:
            raise RuntimeError(f"no randomisation rule for {name} {tuple(t.shape)}")
        counts[kind] = counts.get(kind, 0) + 1
        new[name] = v.half().float()
    sam.load_state_dict(new, strict=True)
    return counts


# --------------------------------------------------------------------------------------------
# Images


def make_images() -> list[dict]:
    from skimage import data

    IMG_DIR.mkdir(parents=True, exist_ok=True)
    rgba_src = data.rocket()[40:373, 200:450]  # 333 x 250 (portrait: padded on the right)
    hh, ww = rgba_src.shape[:2]
    yy, xx = np.mgrid[0:hh, 0:ww]
    alpha = (40 + 215 * (xx / (ww - 1)) * (0.5 + 0.5 * np.cos(yy / 17.0))).round().astype(np.uint8)
    # Wider than 1024 so the resize downscales (x0.853), and short (265 input rows, not a
    # multiple of 16) so most of the encoder input is padding. LANCZOS is only how the picture
    # was made; the predictor's own resize is BILINEAR.
    wide = Image.fromarray(data.coffee()[110:330]).resize((1200, 310), Image.LANCZOS)

    specs = [
        ("astronaut", Image.fromarray(data.astronaut()), "RGB photo, 512x512 (upscaled x2, no padding)"),
        ("coffee", Image.fromarray(data.coffee()), "RGB photo, 400x600 (padded at the bottom)"),
        ("chelsea", Image.fromarray(data.chelsea()), "RGB photo, 300x451 (odd width)"),
        ("camera", Image.fromarray(data.camera()), "8-bit grayscale ('L') PNG, 512x512"),
        (
            "rocket_rgba",
            Image.fromarray(np.dstack([rgba_src, alpha])),
            "RGBA PNG, 333x250 crop of skimage rocket, alpha varies 40..255; the predictor sees "
            "Image.convert('RGB'), which drops alpha (no compositing)",
        ),
        ("coffee_wide", wide, "rows 110..330 of coffee, LANCZOS-resized to 310x1200: the predictor "
         "resize downscales (to 265x1024)"),
    ]
    out = []
    for name, im, note in specs:
        path = IMG_DIR / f"{name}.png"
        im.save(path, "PNG", optimize=True)
        out.append({"name": name, "path": path, "mode": im.mode, "note": note})
    return out


def fnv1a64(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in np.frombuffer(b, dtype=np.uint8).tolist():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# --------------------------------------------------------------------------------------------
# Calibration

# Target fraction of positive low-res logits for decoder masks 0..3 (0 is the single-mask output).
MASK_TARGET_COVERAGE = [0.5, 0.25, 0.45, 0.65]


def calibrate_mask_offsets(sam: Sam, images: list[dict], rounds: int = 2) -> list[list[float]]:
    """Shift each hypernetwork MLP's last bias so its mask is neither empty nor full.

    With random weights every mask token m gets logit(p) = h_m . u(p), and the spatial mean of
    the upscaled features u is large next to their variation, so each mask came out almost empty
    or almost full whatever the image and prompt. Moving h_m by -a * ubar/|ubar|^2 (ubar = mean
    of u over calibration pixels) moves the logits by about -a; a is the logit quantile that
    leaves MASK_TARGET_COVERAGE[m] positive. Calibration prompts are a fixed 3-point grid and a
    centre box per image, separate from the fixture prompts.
    """
    predictor = SamPredictor(sam)
    feats = []
    for img in images:
        predictor.set_image(np.array(Image.open(img["path"]).convert("RGB")))
        feats.append((predictor.features, predictor.original_size, predictor.input_size))
    captured = {}
    hook = sam.mask_decoder.output_upscaling.register_forward_hook(lambda m, i, o: captured.update(up=o))
    history = []
    try:
        for _ in range(rounds):
            logits = [[] for _ in range(4)]
            ups = []
            for f, (oh, ow), (ih, iw) in feats:
                predictor.features, predictor.original_size, predictor.input_size = f, (oh, ow), (ih, iw)
                vh, vw = ih // 4, iw // 4  # the low-res cells that cover the image, not padding
                prompts = [(np.array([[fx * ow, fy * oh]]), np.array([1]), None)
                           for fx, fy in ((0.25, 0.3), (0.5, 0.5), (0.7, 0.65))]
                prompts.append((None, None, np.array([0.25 * ow, 0.25 * oh, 0.75 * ow, 0.75 * oh])))
                for pts, lbl, box in prompts:
                    dec = decode_raw(sam, predictor, pts, lbl, box, None)[4]
                    for m in range(4):
                        logits[m].append(dec[0, m, :vh, :vw].reshape(-1))
                    ups.append(captured["up"][0, :, :vh, :vw].reshape(32, -1))
            ubar = torch.cat(ups, dim=1).mean(dim=1)
            shifts = []
            with torch.no_grad():
                for m in range(4):
                    a = float(torch.quantile(torch.cat(logits[m])[::7], 1.0 - MASK_TARGET_COVERAGE[m]))
                    bias = sam.mask_decoder.output_hypernetworks_mlps[m].layers[2].bias
                    bias -= a * ubar / ubar.dot(ubar)
                    bias.copy_(bias.half().float())
                    shifts.append(round(a, 4))
            history.append(shifts)
    finally:
        hook.remove()
    return history


# --------------------------------------------------------------------------------------------
# Prompts. Coordinates are in original-image pixels, integers or .5 so the JSON is exact.

# inter: which intermediates to dump. "full": sparse + dense (if mask) + decoder iou + all 4
# unsliced decoder masks; "light": the same without the decoder masks (1 MiB each). low_res:
# "all" stores every output mask's logits, "best" only the highest-scoring one, absent none;
# the 38 MiB budget decides (every prompt still has its full-resolution masks and scores).
PROMPTS = [
    # coffee: the image whose embedding is stored, so decoder-only tests have all of these.
    dict(name="coffee_point", image="coffee", points=[[300, 200]], labels=[1], multimask=True, inter="full"),
    dict(name="coffee_fg2_bg1", image="coffee", points=[[300, 200], [420.5, 150], [60, 350]],
         labels=[1, 1, 0], multimask=True, inter="light"),
    dict(name="coffee_box", image="coffee", box=[150, 80, 470, 330], multimask=True, inter="light",
         low_res="best"),
    dict(name="coffee_box_point", image="coffee", points=[[310.5, 190]], labels=[1], box=[150, 80, 470, 330],
         multimask=True, inter="light"),
    dict(name="coffee_mask_point", image="coffee", points=[[300, 200]], labels=[1],
         mask_from="coffee_point", multimask=False, inter="light", low_res="all"),
    dict(name="coffee_point_single", image="coffee", points=[[120, 300]], labels=[1], multimask=False,
         inter="light", low_res="all"),
    # astronaut
    dict(name="astronaut_point", image="astronaut", points=[[256, 150]], labels=[1], multimask=True,
         low_res="best"),
    dict(name="astronaut_fg2_bg1", image="astronaut", points=[[180, 300], [330, 300], [470, 40]],
         labels=[1, 1, 0], multimask=True),
    dict(name="astronaut_box_point_mask", image="astronaut", points=[[260.5, 160.5]], labels=[1],
         box=[100, 20, 420, 300], mask_from="astronaut_point", multimask=False, low_res="all"),
    # chelsea
    dict(name="chelsea_point", image="chelsea", points=[[200, 150]], labels=[1], multimask=True,
         low_res="best"),
    dict(name="chelsea_box", image="chelsea", box=[70, 30, 380.5, 290], multimask=False),
    # camera (grayscale)
    dict(name="camera_point", image="camera", points=[[300, 160]], labels=[1], multimask=True),
    dict(name="camera_box", image="camera", box=[200, 60, 400, 420], multimask=True, low_res="best"),
    # rocket_rgba (portrait)
    dict(name="rocket_rgba_point", image="rocket_rgba", points=[[125, 160]], labels=[1], multimask=True),
    dict(name="rocket_rgba_box_point", image="rocket_rgba", points=[[125, 170]], labels=[1],
         box=[40, 60, 210, 300], multimask=False, low_res="all"),
    # coffee_wide (downscaled, mostly padding)
    dict(name="coffee_wide_point", image="coffee_wide", points=[[600.5, 150]], labels=[1], multimask=True,
         low_res="best"),
    dict(name="coffee_wide_fg2_bg1", image="coffee_wide", points=[[400, 100], [800, 200], [1150, 20]],
         labels=[1, 1, 0], multimask=True),
    dict(name="coffee_wide_box", image="coffee_wide", box=[250, 30, 950, 290], multimask=False),
]
EMBED_IMAGES = ["coffee"]


def mask_stats(m: np.ndarray) -> tuple[int, list[int]]:
    """Area and tight bbox [x, y, w, h] with w = max_x - min_x + 1; [0,0,0,0] when empty."""
    area = int(m.sum())
    if area == 0:
        return 0, [0, 0, 0, 0]
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
    return area, [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def f32_list(a) -> list[float]:
    """float32 values as JSON numbers that parse back (f64 -> f32) to the same bits."""
    return [float(x) for x in np.asarray(a, dtype=np.float32).reshape(-1)]


def save_npy(rel: str, arr: np.ndarray) -> str:
    path = OUT_DIR / rel
    np.save(path, np.ascontiguousarray(arr))
    return f"official/{rel}"


def run_prompts(sam: Sam, images: list[dict]) -> tuple[list[dict], list[dict], dict]:
    predictor = SamPredictor(sam)
    pe = sam.prompt_encoder
    common = {}
    with torch.no_grad():
        dense_pe = pe.get_dense_pe()
    common["dense_pe_strided"] = save_npy(
        "dense_pe_strided.npy", dense_pe[0, :, ::DENSE_STRIDE, ::DENSE_STRIDE].numpy().astype(np.float32)
    )
    common["no_mask_embed"] = save_npy("no_mask_embed.npy", pe.no_mask_embed.weight[0].detach().numpy())
    common["dense_stride"] = DENSE_STRIDE

    img_records, prompt_records = [], []
    best_low_res = {}
    summary = []
    by_image = {}
    for p in PROMPTS:
        by_image.setdefault(p["image"], []).append(p)

    for img in images:
        name = img["name"]
        rgb = np.array(Image.open(img["path"]).convert("RGB"))
        predictor.set_image(rgb)
        resized = predictor.transform.apply_image(rgb)
        assert tuple(resized.shape[:2]) == tuple(predictor.input_size)
        rec = {
            "name": name,
            "file": f"images/{name}.png",
            "png_mode": img["mode"],
            "note": img["note"],
            "orig_size": list(predictor.original_size),
            "input_size": list(predictor.input_size),
            "resized": {
                "shape": list(resized.shape),
                "sha256": hashlib.sha256(resized.tobytes()).hexdigest(),
                "fnv1a64": f"{fnv1a64(resized.tobytes()):016x}",
                "sum": int(resized.astype(np.uint64).sum()),
            },
            "embedding": None,
        }
        feats = predictor.features
        if name in EMBED_IMAGES:
            rec["embedding"] = save_npy(f"{name}_embedding.npy", feats[0].numpy().astype(np.float32))
        rec["embedding_stats"] = {"mean": float(feats.mean()), "std": float(feats.std())}
        img_records.append(rec)

        for p in by_image.get(name, []):
            pr, line = run_one(sam, predictor, p, best_low_res)
            prompt_records.append(pr)
            summary.append(line)
    return img_records, prompt_records, {"common": common, "summary": summary}


def run_one(sam, predictor, p, best_low_res) -> tuple[dict, str]:
    pts = np.array(p["points"], dtype=np.float64) if "points" in p else None
    lbl = np.array(p["labels"], dtype=np.int64) if "labels" in p else None
    box = np.array(p["box"], dtype=np.float64) if "box" in p else None
    mask_in = best_low_res[p["mask_from"]][None] if "mask_from" in p else None
    masks, scores, low_res = predictor.predict(
        point_coords=pts,
        point_labels=lbl,
        box=box,
        mask_input=mask_in,
        multimask_output=p["multimask"],
        return_logits=False,
    )
    best = int(np.argmax(scores))
    best_low_res[p["name"]] = low_res[best].astype(np.float32)
    n = p["name"]
    rec = {
        "name": n,
        "image": p["image"],
        "points": p.get("points"),
        "labels": p.get("labels"),
        "box": p.get("box"),
        "mask_input": None,
        "mask_input_from": p.get("mask_from"),
        "multimask": p["multimask"],
        "num_masks": int(masks.shape[0]),
        "scores": f32_list(scores),
        "best": best,
    }
    if mask_in is not None:
        # Reuse the source prompt's [1,256,256] low-res file when it holds exactly this mask.
        src = best_low_res.get(p["mask_from"] + "/file")
        rec["mask_input"] = src or save_npy(f"{n}_mask_input.npy", mask_in.astype(np.float32))

    # Full-resolution masks: packbits over the C-order [C,H,W] bool array, MSB first.
    packed = np.packbits(masks.astype(bool).reshape(-1), bitorder="big")
    rec["masks"] = {"file": save_npy(f"{n}_masks.npy", packed), "encoding": "packbits_msb",
                    "shape": list(masks.shape)}
    stats = [mask_stats(m) for m in masks]
    rec["areas"] = [a for a, _ in stats]
    rec["bboxes"] = [b for _, b in stats]

    inter = p.get("inter")
    rec["intermediates"] = None
    if inter:
        rec["intermediates"] = intermediates(sam, predictor, p, pts, lbl, box, mask_in, masks, scores, low_res)

    # Low-res logits, unless already stored as channels of the raw decoder output.
    mode = p.get("low_res")
    if inter == "full":
        ch = [1, 2, 3] if p["multimask"] else [0]
        rec["low_res"] = {"file": rec["intermediates"]["decoder_masks"], "channels": ch,
                          "of": "decoder_masks [4,256,256]: output mask i is channel channels[i]"}
    elif mode in ("all", "best"):
        idx = list(range(masks.shape[0])) if mode == "all" else [best]
        rec["low_res"] = {"file": save_npy(f"{n}_low_res.npy", low_res[idx].astype(np.float32)),
                          "mask_indices": idx}
        if idx == [best]:
            best_low_res[n + "/file"] = rec["low_res"]["file"]
    else:
        rec["low_res"] = None

    cov = [float(m.mean()) for m in masks]
    pos = [float((l > 0).mean()) for l in low_res]
    line = (f"{n:28s} C={masks.shape[0]} cover={' '.join(f'{c:5.1%}' for c in cov):22s} "
            f"lowres+={' '.join(f'{c:5.1%}' for c in pos):22s} scores={' '.join(f'{s:+.3f}' for s in scores)} "
            f"logit[{low_res.min():+.1f},{low_res.max():+.1f}]")
    rec["_coverage"] = cov
    return rec, line


def decode_raw(sam, predictor, pts, lbl, box, mask_in):
    """Prompt encoder + unsliced mask decoder, inputs prepared exactly as SamPredictor.predict does."""
    coords_t = labels_t = box_t = mask_t = None
    if pts is not None:
        c = predictor.transform.apply_coords(pts, predictor.original_size)
        coords_t = torch.as_tensor(c, dtype=torch.float)[None]
        labels_t = torch.as_tensor(lbl, dtype=torch.int)[None]
    if box is not None:
        b = predictor.transform.apply_boxes(box, predictor.original_size)
        box_t = torch.as_tensor(b, dtype=torch.float)[None]
    if mask_in is not None:
        mask_t = torch.as_tensor(mask_in, dtype=torch.float)[None]
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(
            points=(coords_t, labels_t) if coords_t is not None else None, boxes=box_t, masks=mask_t
        )
        dec_masks, dec_iou = sam.mask_decoder.predict_masks(
            image_embeddings=predictor.features,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
    return coords_t, box_t, sparse, dense, dec_masks, dec_iou


def intermediates(sam, predictor, p, pts, lbl, box, mask_in, masks, scores, low_res) -> dict:
    """Prompt-encoder and mask-decoder outputs for one prompt."""
    n = p["name"]
    coords_t, box_t, sparse, dense, dec_masks, dec_iou = decode_raw(sam, predictor, pts, lbl, box, mask_in)
    sl = slice(1, None) if p["multimask"] else slice(0, 1)
    # The predictor's own outputs must be a slice of these, bit for bit.
    assert np.array_equal(dec_masks[0, sl].numpy(), low_res), n
    assert np.array_equal(dec_iou[0, sl].numpy(), scores), n
    out = {
        "coords_1024": f32_list(coords_t[0]) if coords_t is not None else None,
        "box_1024": f32_list(box_t[0]) if box_t is not None else None,
        "sparse": save_npy(f"{n}_sparse.npy", sparse[0].numpy().astype(np.float32)),
        "sparse_shape": list(sparse[0].shape),
        "dense": None,
        "decoder_iou": f32_list(dec_iou[0]),
        "decoder_masks": None,
    }
    if mask_in is not None:
        out["dense"] = save_npy(
            f"{n}_dense_strided.npy",
            dense[0, :, ::DENSE_STRIDE, ::DENSE_STRIDE].numpy().astype(np.float32),
        )
    if p["inter"] == "full":
        out["decoder_masks"] = save_npy(f"{n}_decoder_masks.npy", dec_masks[0].numpy().astype(np.float32))
    return out


# --------------------------------------------------------------------------------------------
# Diagnostics


def attention_balance(sam: Sam, predictor_input: torch.Tensor) -> list[str]:
    """Std of the content term vs the rel-pos terms in each encoder block's attention logits."""
    from segment_anything.modeling.image_encoder import get_rel_pos, window_partition

    enc = sam.image_encoder
    lines = []
    with torch.no_grad():
        x = enc.patch_embed(predictor_input) + enc.pos_embed
        for i, blk in enumerate(enc.blocks):
            h = blk.norm1(x)
            if blk.window_size > 0:
                h, _ = window_partition(h, blk.window_size)
            B, H, W, _ = h.shape
            a = blk.attn
            qkv = a.qkv(h).reshape(B, H * W, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4)
            q, k, _ = qkv.reshape(3, B * a.num_heads, H * W, -1).unbind(0)
            content = (q * a.scale) @ k.transpose(-2, -1)
            Rh = get_rel_pos(H, H, a.rel_pos_h)
            rq = q.reshape(B * a.num_heads, H, W, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", rq, Rh)
            kind = "win" if blk.window_size else "glob"
            lines.append(f"block {i} ({kind}): content std {content.std():.2f}, rel_h std "
                         f"{rel_h.std():.2f}, |x| rms {x.pow(2).mean().sqrt():.2f}")
            x = blk(x)
    return lines


def dir_bytes(
    path: Path, skip=("pth", "resize", "encoder_img_size", "amg", "img_size")
) -> int:
    total = 0
    for f in path.rglob("*"):
        rel = f.relative_to(path).parts
        if f.is_file() and rel[0] not in skip:
            total += f.stat().st_size
    return total


def main() -> None:
    torch.set_num_threads(1)  # one summation order, whatever the machine
    torch.manual_seed(SEED)
    FIX.mkdir(parents=True, exist_ok=True)
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)

    sam = build_tiny_sam()
    counts = randomise(sam)
    images = make_images()
    calib = calibrate_mask_offsets(sam, images)
    sd = sam.state_dict()
    assert all(torch.equal(t, t.half().float()) for t in sd.values())
    torch.save(sd, FIX / MODEL_FILE)
    n_params = sum(t.numel() for t in sd.values())

    img_records, prompt_records, extra = run_prompts(sam, images)

    coverage = [c for pr in prompt_records for c in pr.pop("_coverage")]
    ok = sum(0.05 <= c <= 0.95 for c in coverage)
    all_scores = [s for pr in prompt_records for s in pr["scores"]]

    manifest = {
        "generator": "tools/make_fixtures.py",
        "versions": {"torch": torch.__version__, "numpy": np.__version__,
                     "pillow": Image.__version__, "resize": TV_SOURCE},
        "seed": SEED,
        "model": {
            "file": MODEL_FILE,
            "format": "torch.save of a flat f32 state_dict (zip), like the official checkpoints",
            "num_tensors": len(sd),
            "num_params": n_params,
            "values": "every tensor random, rounded to fp16-representable f32; then the last "
                      "bias of each output_hypernetworks_mlps.{m} shifted (see calibration)",
            "init": {"linear_conv": "N(0,1/fan_in)", "layer_norm": "weight 1+0.2N, bias 0.1N",
                     "bias": "0.1N", "embedding": "N(0,1)", "rel_pos": f"{SCALE_REL_POS}N",
                     "pos_embed": f"{SCALE_POS_EMBED}*smooth field + {SCALE_POS_EMBED_IID}N",
                     "conv_transpose": f"taps share {CONVT_TAP_SHARE} of the 2x2 kernel",
                     "gaussian_pe": "N(0,1)"},
            "calibration": {"target_positive_fraction": MASK_TARGET_COVERAGE,
                            "logit_shift_per_round": calib},
            "threads": "generated with torch.set_num_threads(1); bit-identical on rerun",
            "config": {
                "embed_dim": ENC["embed_dim"], "depth": ENC["depth"], "num_heads": ENC["num_heads"],
                "head_dim": ENC["embed_dim"] // ENC["num_heads"], "window_size": ENC["window_size"],
                "global_attn_indexes": ENC["global_attn_indexes"], "mlp_dim": 4 * ENC["embed_dim"],
                "img_size": 1024, "patch_size": 16, "out_chans": 256,
                "prompt_embed_dim": 256, "mask_in_chans": 16, "decoder": "official (vit_b/l/h identical)",
            },
        },
        "conventions": {
            "coordinates": "points [x,y] and boxes [x0,y0,x1,y1] in original-image pixels, passed "
                           "as float64 to SamPredictor.predict",
            "predictor_input": "np.array(Image.open(file).convert('RGB')): L is replicated, RGBA "
                               "drops alpha",
            "masks": "np.packbits(masks.reshape(-1), bitorder='big') over the bool array [C,H,W] "
                     "(C-order); unpack the first C*H*W bits",
            "area": "number of true pixels",
            "bbox": "[x, y, w, h]: x,y = min col,row; w = max_col - min_col + 1, h = max_row - "
                    "min_row + 1; [0,0,0,0] when empty (the CLI contract; NB the automatic mask "
                    "generator's records use w = max - min without +1)",
            "scores": "float32 IoU predictions written as JSON numbers (exact after f64->f32)",
            "low_res": "float32 [k,256,256] logits; 'mask_indices' says which output masks are "
                       "stored (all, or only the best-scoring, to keep the size down); for prompts "
                       "with decoder_masks, 'channels' indexes that [4,256,256] file instead",
            "strided": f"*_strided.npy are t[:, ::{DENSE_STRIDE}, ::{DENSE_STRIDE}] of a [256,64,64] "
                       "tensor (rows/cols 0,7,..,63)",
            "resized": "Pillow-resized uint8 HxWx3 image (predictor.transform.apply_image) "
                       "identified by sha256 / FNV-1a-64 of its bytes and its sum (not stored: "
                       "2-3 MiB each; tests/fixtures/resize/ covers the resize itself)",
            "intermediates": "sparse: prompt_encoder sparse output [N,256] (N includes the pad "
                             "point when there is no box); dense: *_strided.npy only when a "
                             "mask_input is given, else it is common.no_mask_embed broadcast; "
                             "decoder_iou: all 4 IoU predictions of predict_masks; "
                             "decoder_masks: unsliced [4,256,256] predict_masks logits or null; "
                             "coords_1024/box_1024: the transformed prompt as fed to the encoder",
            "embedding": "predictor.features[0], float32 [256,64,64]",
            "tolerances": {"low_res_logit_abs": 1e-2, "mask_pixel_agreement": 0.995,
                           "score_abs": 2e-3},
        },
        "common": extra["common"],
        "images": img_records,
        "prompts": prompt_records,
    }
    with open(FIX / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    print(f"resize via: {TV_SOURCE}")
    print(f"model: {len(sd)} tensors, {n_params:,} params; randomised by kind: {counts}")
    print(f"mask offset calibration (logit shift per decoder mask, per round): {calib}")
    probe = np.array(Image.open(IMG_DIR / "astronaut.png").convert("RGB"))
    probe = SamPredictor(sam).transform.apply_image(probe)
    probe = sam.preprocess(torch.as_tensor(probe).permute(2, 0, 1)[None].contiguous())
    for line in attention_balance(sam, probe):
        print("  " + line)
    for r in img_records:
        print(f"image {r['name']:12s} orig {r['orig_size']} -> input {r['input_size']} "
              f"embedding mean {r['embedding_stats']['mean']:+.3f} std {r['embedding_stats']['std']:.3f}")
    for line in extra["summary"]:
        print(line)
    print(f"masks with 5%..95% coverage: {ok}/{len(coverage)}; scores in "
          f"[{min(all_scores):+.3f}, {max(all_scores):+.3f}], std {np.std(all_scores):.3f}")
    size = dir_bytes(FIX)
    print(f"fixture bytes (excluding pth/, resize/): {size / 2**20:.2f} MiB "
          f"(budget {BUDGET_BYTES / 2**20:.0f})")
    if size > BUDGET_BYTES:
        sys.exit("over the size budget")


if __name__ == "__main__":
    main()
