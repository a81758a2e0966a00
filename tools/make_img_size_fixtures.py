#!/usr/bin/env python3
"""Official whole-model (encoder + prompt encoder + mask decoder + postprocessing) references at
image sizes 256, 512 and 1024 (tests/fixtures/img_size/).

At img_size S the official `Sam` has an embedding grid E = S / 16, a dense positional encoding
of E x E, a mask input and low-res masks of 4E x 4E ([C, 4E, 4E]; 256 only at S = 1024), and
postprocessing that upsamples the low-res logits to S x S, crops the resized image's
`input_size` and resizes to the original size. samrt reads all of that from the model; this
script writes what it is checked against.

Models (one per S, built as `build_sam.py::_build_sam` with its image_size changed):
- Image encoder: the official `ImageEncoderViT` (via make_encoder_img_size_fixtures.py's
  `build_encoder`) with embed 64, depth 2, 1 head of 64 (the CUDA encoder has kernels for head_dim 64 and 80), global block (1), window 14,
  out_chans 256 (the decoder reads 256 channels), patch 16, img_size S. Random weights from
  that script's `random_state` (fp16-representable, "trained-ViT-like" conditioning: q/k rows
  x1.5, residual-branch output projections x1/sqrt(2*depth), LayerNorm 1 + 0.2 N, biases 0.1 N,
  rel_pos 0.15 N, pos_embed 0.5 x a smooth field + 0.1 N), a fixed seed per size (`SEEDS`:
  picked so that no output mask is nearly empty or full, see there). Saved alone as `encoder{S}.pth`: torch.save of a dict of the `image_encoder.*`
  tensors, f16 storages.
- Prompt encoder and mask decoder: every `prompt_encoder.*` / `mask_decoder.*` tensor of
  tests/fixtures/sam_tiny.pth (made by tools/make_fixtures.py; those parts have no
  image-size-dependent shapes), loaded into `PromptEncoder(image_embedding_size=(E, E),
  input_image_size=(S, S))` and the official `MaskDecoder`. The test merges `encoder{S}.pth`
  with these tensors of sam_tiny.pth; nothing of the decoder is stored here.

Cases (one directory each):
- `vit256`, `vit512`, `vit1024`: each model at its own size.
- `vit1024_at512`: the 1024 encoder run at img_size 512, as samrt's `--image-size 512` runs it:
  the official Sam is built at 512 and gets the 1024 weights except `pos_embed`, resized
  64x64 -> 32x32 with `F.interpolate(..., mode="bicubic", align_corners=False)` computed in
  float64 from the f16 values (that float64 tensor in the float64 run, it rounded to float32
  in the float32 run), and the global block's 127-row `rel_pos_h` / `rel_pos_w`: loaded as
  they are (replacing the 63-row parameters after `load_state_dict`), so the official
  `get_rel_pos` interpolates them (linear, align_corners False) to 63 rows at every forward.
  Windowed blocks keep their 27-row tables (window 14 at either size).

Image and prompts (the same for every case): `image.png` is tests/fixtures/images/chelsea.png
as RGB, PIL-bilinear resized to 120 x 90 (w x h; original size (90, 120), non-square, so the
postprocessing crop matters). Prompts in original-image pixels (prompts.json, samrt's
`segment --prompts` format):
- p0: point (70.5, 40.25) fg, multimask (3 masks);
- p1: box (20, 15, 100, 80) + point (30, 60) bg, single mask;
- p2: point (70.5, 40.25) fg + `mask_input.npy`, single mask. mask_input.npy (f32 [1, 4E, 4E])
  is the case's float64 p0 low-res logits of its best mask (argmax of the float64 IoU),
  rounded to float32; both official runs are fed exactly this array.

Official runs: each case runs the official `SamPredictor` twice, with the model in float32
and in float64 (`.double()`): `set_image` on the u8 HWC array, the prompts mapped with
`predictor.transform.apply_coords` / `apply_boxes` on float64 numpy and passed to
`predict_torch(..., return_logits=True)` as float32 / float64 tensors (`predict` itself casts
them to float32). The float32 outputs are asserted bit-identical to plain `predict`. The
official code cannot run in float64 as it is: `PositionEmbeddingRandom.forward` (the dense PE)
and `forward_with_coords` (point and box PE) build float32 coordinates and matmul them with the
(now float64) Gaussian matrix, which raises a dtype error. For the float64 run only, those two
methods are replaced by copies that use the matrix's dtype instead of float32
(`float64_position_encoding`); the float32 run is asserted bit-identical with and without that
patch, and a forward hook asserts every module output of the float64 run is float64.

Files per case directory:
- `p{k}_low_res.npy`: f32 [C, 4E, 4E], the float64 run's low-res logits rounded to float32.
- `p{k}_logits.npy`: f32 [C, 90, 120], the float64 run's full-size logits, rounded to float32.
- `p{k}_iou.npy`: f64 [C], the float64 run's IoU predictions.
- `mask_input.npy`, `prompts.json` (above).
- `case.json`: sizes, encoder config and file, how vit1024_at512 adapts the 1024 weights,
  seeds, versions, and the official float32 error against float64: for the embedding (max abs,
  relative L2) and per prompt (`low_res_max_abs`, `logits_max_abs`, `iou_max_abs`,
  `mask_disagreements` = pixels where the float32 and float64 logits differ in sign,
  `min_abs_logit_f64`).

Run from anywhere: `python3 tools/make_img_size_fixtures.py` (about 8 s; needs torch, numpy,
Pillow and segment_anything; torchvision is optional, see make_fixtures.py's
`_ensure_torchvision`). Deterministic: fixed seeds, one torch thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# make_fixtures installs the torchvision shim (if needed) and imports the official package.
from make_fixtures import (  # noqa: E402
    TV_SOURCE,
    MaskDecoder,
    PromptEncoder,
    Sam,
    SamPredictor,
    TwoWayTransformer,
)
from make_encoder_img_size_fixtures import (  # noqa: E402
    PIXEL_MEAN,
    PIXEL_STD,
    build_encoder,
    random_state,
    rel_l2,
)
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "img_size"
SRC_IMAGE = FIX / "images" / "chelsea.png"
DECODER_MODEL = FIX / "sam_tiny.pth"
IMAGE_FILE = "image.png"
IMAGE_WH = (120, 90)

SIZES = (256, 512, 1024)
# The decoder was calibrated (make_fixtures.py) for sam_tiny's encoder, not these: with many
# seeds some mask here came out (almost) empty or full. Each is the first of SEED + i + 3k
# (i = 0, 1, 2 for 256, 512, 1024; k = 0, 1, ...) whose every mask, in every case, has 5-95%
# positive full-size logits (asserted below), so every mask's sign pattern is a real check.
SEED = 20261215
SEEDS = {256: SEED + 6, 512: SEED + 13, 1024: SEED + 5}
MASK_COVERAGE = (0.05, 0.95)
ENC = dict(embed_dim=64, depth=2, num_heads=1, global_attn_indexes=[1], window_size=14,
           out_chans=256)
# (directory, size the encoder was made for, size the Sam is built and run at)
CASES = [("vit256", 256, 256), ("vit512", 512, 512), ("vit1024", 1024, 1024),
         ("vit1024_at512", 1024, 512)]
PROMPTS = [
    dict(points=[[70.5, 40.25]], labels=[1], multimask=True),
    dict(points=[[30, 60]], labels=[0], box=[20, 15, 100, 80], multimask=False),
    dict(points=[[70.5, 40.25]], labels=[1], mask_input="mask_input.npy", multimask=False),
]
MASK_FROM = 0  # p2's mask_input is this prompt's best float64 low-res mask
# Fixture size budget for this directory; about 8.7 MB, 5.3 MB of which are the three encoders
# (3 x 1.2 MB is the 3x3 256 -> 256 neck conv that out_chans 256 requires).
BUDGET_BYTES = 9 * 1000 * 1000


# --------------------------------------------------------------------------------------------
# Models


def build_sam(img_size: int) -> Sam:
    """`build_sam.py::_build_sam` with this script's encoder, at `img_size`."""
    g = img_size // 16
    return Sam(
        image_encoder=build_encoder(ENC, img_size),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(g, g),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD,
    ).eval()


def make_encoders() -> dict[int, dict]:
    """Random f16 encoder state (names without the `image_encoder.` prefix) per size; saved."""
    out = {}
    for s in SIZES:
        sd16 = random_state(build_encoder(ENC, s), ENC["depth"], SEEDS[s])
        torch.save(OrderedDict((f"image_encoder.{k}", v) for k, v in sd16.items()),
                   OUT / f"encoder{s}.pth")
        out[s] = sd16
    return out


def decoder_state() -> dict:
    sd = torch.load(DECODER_MODEL, map_location="cpu", weights_only=True)
    return {k: v for k, v in sd.items() if k.startswith(("prompt_encoder.", "mask_decoder."))}


def resize_pos_embed(pos16: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, G, G, C] -> [1, grid, grid, C], bicubic (align_corners False), in float64."""
    return F.interpolate(pos16.double().permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic",
                         align_corners=False).permute(0, 2, 3, 1)


def load_model(enc16: dict, dec: dict, run_size: int, dtype: torch.dtype) -> tuple[Sam, dict]:
    """The official Sam at run_size in `dtype` with these weights; adapts a foreign encoder.

    When the encoder was made for another size: pos_embed is resized (float64, then `dtype`);
    rel-pos tables whose row count differs from the model's (the global blocks') replace the
    model's parameters as they are, so `get_rel_pos` interpolates them at forward time.
    """
    sam = build_sam(run_size).to(dtype)
    model_sd = sam.state_dict()
    state = {f"image_encoder.{k}": v.to(dtype) for k, v in enc16.items()}
    state.update({k: v.to(dtype) for k, v in dec.items()})
    adapted = {}
    grid = run_size // 16
    if enc16["pos_embed"].shape[1] != grid:
        state["image_encoder.pos_embed"] = resize_pos_embed(enc16["pos_embed"], grid).to(dtype)
        for k in list(state):
            if k.endswith(("rel_pos_h", "rel_pos_w")) and state[k].shape != model_sd[k].shape:
                adapted[k] = state.pop(k)
    res = sam.load_state_dict(state, strict=False)
    assert not res.unexpected_keys and sorted(res.missing_keys) == sorted(adapted), res
    for k, table in adapted.items():
        mod = sam.get_submodule(k.rsplit(".", 1)[0])
        setattr(mod, k.rsplit(".", 1)[1], torch.nn.Parameter(table, requires_grad=False))
        assert sam.state_dict()[k] is not None and sam.state_dict()[k].shape == table.shape
    return sam.eval(), {k: list(v.shape) for k, v in adapted.items()}


# --------------------------------------------------------------------------------------------
# Official runs


@contextlib.contextmanager
def float64_position_encoding():
    """PositionEmbeddingRandom in the Gaussian matrix's dtype instead of hard-coded float32.

    Copies of the official `forward` / `forward_with_coords`, except for the dtype of the grid
    and of the normalised coordinates. In a float32 model they compute the same thing (the
    script asserts bit-identical outputs); in a float64 model they make the official code run.
    """
    cls = PositionEmbeddingRandom
    orig = cls.forward, cls.forward_with_coords

    def forward(self, size):
        h, w = size
        m = self.positional_encoding_gaussian_matrix
        grid = torch.ones((h, w), device=m.device, dtype=m.dtype)
        y_embed = grid.cumsum(dim=0) - 0.5
        x_embed = grid.cumsum(dim=1) - 0.5
        y_embed = y_embed / h
        x_embed = x_embed / w
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))
        return pe.permute(2, 0, 1)

    def forward_with_coords(self, coords_input, image_size):
        coords = coords_input.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.to(self.positional_encoding_gaussian_matrix.dtype))

    cls.forward, cls.forward_with_coords = forward, forward_with_coords
    try:
        yield
    finally:
        cls.forward, cls.forward_with_coords = orig


@contextlib.contextmanager
def all_outputs(model: torch.nn.Module, dtype: torch.dtype):
    """Assert every floating-point tensor a submodule returns has `dtype`."""
    def check(mod, _inp, out):
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for t in outs:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                assert t.dtype == dtype, (type(mod).__name__, t.dtype)

    hooks = [m.register_forward_hook(check) for m in model.modules()]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def prompt_tensors(predictor, p: dict, mask_input, dtype: torch.dtype) -> dict:
    """predict()'s own preparation of the prompt, with `dtype` instead of float32."""
    orig = predictor.original_size
    kw = dict(point_coords=None, point_labels=None, boxes=None, mask_input=None)
    if "points" in p:
        c = predictor.transform.apply_coords(np.array(p["points"], dtype=np.float64), orig)
        kw["point_coords"] = torch.as_tensor(c, dtype=dtype)[None, :, :]
        kw["point_labels"] = torch.as_tensor(np.array(p["labels"]), dtype=torch.int)[None, :]
    if "box" in p:
        b = predictor.transform.apply_boxes(np.array(p["box"], dtype=np.float64), orig)
        kw["boxes"] = torch.as_tensor(b, dtype=dtype)[None, :]
    if "mask_input" in p:
        kw["mask_input"] = torch.as_tensor(mask_input, dtype=dtype)[None, :, :, :]
    return kw


def run_official(sam: Sam, img: np.ndarray, dtype: torch.dtype, mask_input_for) -> dict:
    """Embedding and per-prompt (logits, iou, low_res) numpy arrays of one official run.

    `mask_input_for(outputs_so_far)` gives p2's mask input once the earlier prompts ran.
    """
    predictor = SamPredictor(sam)
    outs = []
    with all_outputs(sam, dtype):
        predictor.set_image(img)
        for p in PROMPTS:
            mask_input = mask_input_for(outs) if "mask_input" in p else None
            kw = prompt_tensors(predictor, p, mask_input, dtype)
            if dtype == torch.float64:
                with float64_position_encoding():
                    res = predictor.predict_torch(**kw, multimask_output=p["multimask"],
                                                  return_logits=True)
            else:
                res = predictor.predict_torch(**kw, multimask_output=p["multimask"],
                                              return_logits=True)
            res = [t[0].numpy() for t in res]
            if dtype == torch.float32:
                plain = predictor.predict(
                    point_coords=np.array(p["points"], dtype=np.float64) if "points" in p else None,
                    point_labels=np.array(p["labels"]) if "labels" in p else None,
                    box=np.array(p["box"], dtype=np.float64) if "box" in p else None,
                    mask_input=mask_input, multimask_output=p["multimask"], return_logits=True)
                with float64_position_encoding():
                    patched = predictor.predict_torch(**kw, multimask_output=p["multimask"],
                                                      return_logits=True)
                for a, b, c in zip(res, plain, patched):
                    assert a.dtype == np.float32 and np.array_equal(a, b), "predict_torch != predict"
                    assert np.array_equal(a, c[0].numpy()), "the float64 PE patch changes float32"
            assert all(t.dtype == (np.float64 if dtype == torch.float64 else np.float32)
                       for t in res)
            outs.append(dict(zip(("logits", "iou", "low_res"), res)))
    return {"embedding": predictor.features[0].numpy(), "prompts": outs,
            "input_size": list(predictor.input_size),
            "original_size": list(predictor.original_size)}


# --------------------------------------------------------------------------------------------
# Cases


def make_image() -> np.ndarray:
    im = Image.open(SRC_IMAGE).convert("RGB").resize(IMAGE_WH, Image.BILINEAR)
    im.save(OUT / IMAGE_FILE, "PNG", optimize=True)
    img = np.array(Image.open(OUT / IMAGE_FILE).convert("RGB"))
    assert img.shape == (IMAGE_WH[1], IMAGE_WH[0], 3) and np.array_equal(img, np.asarray(im))
    return img


def write_case(name: str, trained: int, run: int, enc16: dict, dec: dict,
               img: np.ndarray) -> dict:
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    grid = run // 16
    low = 4 * grid
    mask_input = {}

    def mask_from_f64(outs):
        if "m" not in mask_input:
            p = outs[MASK_FROM]
            best = int(np.argmax(p["iou"]))
            mask_input["m"] = p["low_res"][best][None].astype(np.float32)
            mask_input["best"] = best
        return mask_input["m"]

    sam64, adapted = load_model(enc16, dec, run, torch.float64)
    r64 = run_official(sam64, img, torch.float64, mask_from_f64)
    sam32, adapted32 = load_model(enc16, dec, run, torch.float32)
    r32 = run_official(sam32, img, torch.float32, lambda _outs: mask_input["m"])
    assert adapted == adapted32
    if adapted:
        enc = sam64.image_encoder
        for i in ENC["global_attn_indexes"]:
            a = enc.blocks[i].attn
            assert a.rel_pos_h.shape[0] == a.rel_pos_w.shape[0] == 2 * (trained // 16) - 1 == 127
        assert enc.pos_embed.shape[1:3] == (grid, grid) and grid == 32
        assert all(blk.window_size == 0 or blk.attn.rel_pos_h.shape[0] == 27
                   for blk in enc.blocks)

    np.save(out / "mask_input.npy", mask_input["m"])
    assert mask_input["m"].shape == (1, low, low)
    with open(out / "prompts.json", "w") as f:
        f.write("[\n" + ",\n".join(" " + json.dumps(p) for p in PROMPTS) + "\n]\n")

    prompts = []
    for k, (p, a, b) in enumerate(zip(PROMPTS, r64["prompts"], r32["prompts"])):
        c = 3 if p["multimask"] else 1
        cover = [float((m > 0).mean()) for m in a["logits"]]
        assert all(MASK_COVERAGE[0] <= x <= MASK_COVERAGE[1] for x in cover), (name, k, cover)
        assert a["low_res"].shape == (c, low, low) and a["logits"].shape == (c, *img.shape[:2])
        np.save(out / f"p{k}_low_res.npy", a["low_res"].astype(np.float32))
        np.save(out / f"p{k}_logits.npy", a["logits"].astype(np.float32))
        np.save(out / f"p{k}_iou.npy", a["iou"])
        prompts.append(dict(
            name=f"p{k}",
            num_masks=c,
            iou_f64=[float(x) for x in a["iou"]],
            positive_fraction_f64=cover,
            low_res_max_abs=float(np.abs(b["low_res"] - a["low_res"]).max()),
            logits_max_abs=float(np.abs(b["logits"] - a["logits"]).max()),
            iou_max_abs=float(np.abs(b["iou"] - a["iou"]).max()),
            mask_disagreements=int(((b["logits"] > 0) != (a["logits"] > 0)).sum()),
            min_abs_logit_f64=float(np.abs(a["logits"]).min()),
        ))

    e64, e32 = r64["embedding"], r32["embedding"]
    assert e64.shape == (256, grid, grid)
    case = dict(
        case=name,
        img_size=run,
        grid=grid,
        low_res=low,
        encoder=dict(ENC, patch_size=16, mlp_ratio=4, qkv_bias=True, use_rel_pos=True,
                     head_dim=ENC["embed_dim"] // ENC["num_heads"], img_size=trained),
        encoder_file=f"encoder{trained}.pth",
        seeds=dict(encoder=SEEDS[trained], torch_manual_seed=SEED,
                   note="random_state(seed) draws every encoder value; nothing else is random"),
        decoder_file="../sam_tiny.pth",
        decoder_tensors="prompt_encoder.*, mask_decoder.*",
        paths="encoder_file, decoder_file and image relative to tests/fixtures/img_size/; "
              "mask_input and the p{k}_*.npy relative to the case directory",
        adapted=None,
        image=IMAGE_FILE,
        original_size=r64["original_size"],
        input_size=r64["input_size"],
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
        mask_input=dict(file="mask_input.npy", shape=[1, low, low],
                        source=f"p{MASK_FROM} float64 low-res mask {mask_input['best']} "
                               "(argmax of its float64 iou), rounded to float32"),
        torch=torch.__version__,
        numpy=np.__version__,
        resize=TV_SOURCE,
        official_runs="SamPredictor.set_image + predict_torch(return_logits=True), model in "
                      "float32 and in float64 (.double(); PositionEmbeddingRandom patched to "
                      "keep float64, see the script); stored outputs are the float64 run's",
        embedding=dict(shape=list(e64.shape), std_f64=float(e64.std()),
                       max_abs=float(np.abs(e32 - e64).max()), rel_l2=rel_l2(e32, e64)),
        prompts=prompts,
    )
    if adapted:
        case["adapted"] = dict(
            trained_img_size=trained,
            run_img_size=run,
            pos_embed=f"[1,{trained // 16},{trained // 16},{ENC['embed_dim']}] -> "
                      f"[1,{grid},{grid},{ENC['embed_dim']}]: F.interpolate(pos.permute(0,3,1,2), "
                      f"size=({grid},{grid}), mode='bicubic', align_corners=False)"
                      ".permute(0,2,3,1) in float64 from the f16 values; the float32 run gets it "
                      "rounded to float32",
            rel_pos={k.removeprefix("image_encoder."): v for k, v in adapted.items()},
            rel_pos_note=f"global-block tables kept at {2 * (trained // 16) - 1} rows; the "
                         f"official get_rel_pos interpolates them to {2 * grid - 1} rows "
                         "(F.interpolate linear, align_corners False) at forward time; windowed "
                         "blocks keep their 27-row tables",
        )
    with open(out / "case.json", "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")

    print(f"{name}: img {run} grid {grid} low-res {low} input {r64['input_size']}; embedding "
          f"std {e64.std():.3f}, f32 vs f64 max {case['embedding']['max_abs']:.2e} rel L2 "
          f"{case['embedding']['rel_l2']:.2e}")
    for pr in prompts:
        print(f"  {pr['name']}: iou {' '.join(f'{x:+.3f}' for x in pr['iou_f64'])}  pos "
              f"{' '.join(f'{x:5.1%}' for x in pr['positive_fraction_f64'])}  f32 err: low "
              f"{pr['low_res_max_abs']:.2e} logits {pr['logits_max_abs']:.2e} iou "
              f"{pr['iou_max_abs']:.2e} flips {pr['mask_disagreements']} (min |logit| "
              f"{pr['min_abs_logit_f64']:.2e})")
    return case


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    img = make_image()
    encoders = make_encoders()
    dec = decoder_state()
    for name, trained, run in CASES:
        write_case(name, trained, run, encoders[trained], dec, img)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {size / 1e6:.2f} MB (budget {BUDGET_BYTES / 1e6:.1f})")
    if size > BUDGET_BYTES:
        sys.exit("over the size budget")


if __name__ == "__main__":
    main()
