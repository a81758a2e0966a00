"""SamPredictor through the Python API against the official outputs stored as fixtures,
with the Rust tests' tolerances (tests/parity.rs): scores within 2e-3, mask pixels 99.5 %
in agreement, low-res logits within 1e-2."""

import numpy as np
import pytest
from conftest import FIXTURES, embedded, image, packed_masks, prompt_kwargs, prompts_of

import samrt


def check_official(p, masks, scores, low_res, tol):
    name = p["name"]
    want = packed_masks(p["masks"])
    c = len(p["scores"])
    assert masks.dtype == np.bool_ and masks.shape == want.shape, name
    assert scores.dtype == np.float32 and scores.shape == (c,), name
    assert low_res.dtype == np.float32 and low_res.shape == (c, 256, 256), name
    assert np.abs(scores.astype(np.float64) - p["scores"]).max() <= tol["score_abs"], name
    agree = (masks == want).mean()
    assert agree >= tol["mask_pixel_agreement"], f"{name}: mask agreement {agree}"
    lr = p["low_res"]
    if lr is not None:
        ref = np.load(FIXTURES / lr["file"])
        for k, i in enumerate(lr.get("mask_indices", range(c))):
            src = lr["channels"][i] if "channels" in lr else k
            d = np.abs(low_res[i] - ref[src]).max()
            assert d <= tol["low_res_logit_abs"], f"{name}: low-res max |diff| {d}"


@pytest.mark.parametrize(
    "image_name", ["astronaut", "coffee", "chelsea", "camera", "rocket_rgba", "coffee_wide"]
)
def test_predict_matches_official(sam, manifest, image_name):
    tol = manifest["conventions"]["tolerances"]
    pred = embedded(sam, manifest, image_name)
    entry = next(i for i in manifest["images"] if i["name"] == image_name)
    assert pred.is_image_set
    assert pred.original_size == tuple(entry["orig_size"])
    assert pred.input_size == tuple(entry["input_size"])
    prompts = prompts_of(manifest, image_name)
    assert prompts
    for p in prompts:
        masks, scores, low_res = pred.predict(**prompt_kwargs(p))
        check_official(p, masks, scores, low_res, tol)


def test_embedding_matches_official(sam, manifest):
    pred = embedded(sam, manifest, "coffee")
    emb = pred.get_image_embedding()
    assert emb.shape == (1, 256, 64, 64) and emb.dtype == np.float32
    assert not emb.flags.writeable
    want = np.load(FIXTURES / "official" / "coffee_embedding.npy")
    rel = np.linalg.norm((emb[0] - want).ravel()) / np.linalg.norm(want.ravel())
    assert rel < 1e-5
    assert pred.features is not None and pred.features.shape == (1, 256, 64, 64)


def test_set_embedding_restores_without_encoding(sam, manifest):
    """The official embedding restored from its .npy gives the official predictions."""
    tol = manifest["conventions"]["tolerances"]
    pred = samrt.SamPredictor(sam)
    pred.set_embedding(np.load(FIXTURES / "official" / "coffee_embedding.npy"), (400, 600))
    assert pred.is_image_set and pred.input_size == (683, 1024)
    for p in prompts_of(manifest, "coffee"):
        check_official(p, *pred.predict(**prompt_kwargs(p)), tol)
    # A round trip through get_image_embedding is exact.
    src = embedded(sam, manifest, "chelsea")
    again = samrt.SamPredictor(sam)
    again.set_embedding(src.get_image_embedding(), src.original_size, src.input_size)
    kw = prompt_kwargs(prompts_of(manifest, "chelsea")[0])
    for a, b in zip(src.predict(**kw), again.predict(**kw)):
        np.testing.assert_array_equal(a, b)


def test_return_logits(sam, manifest):
    pred = embedded(sam, manifest, "chelsea")
    for p in prompts_of(manifest, "chelsea"):
        kw = prompt_kwargs(p)
        masks, scores, low = pred.predict(**kw)
        logits, scores2, low2 = pred.predict(**kw, return_logits=True)
        assert logits.dtype == np.float32 and logits.shape == masks.shape
        np.testing.assert_array_equal(logits > 0.0, masks)
        np.testing.assert_array_equal(scores, scores2)
        np.testing.assert_array_equal(low, low2)


def test_predict_batch_equals_predict(sam, manifest):
    pred = embedded(sam, manifest, "coffee")
    kws = [prompt_kwargs(p) for p in prompts_of(manifest, "coffee")]
    for return_logits in (False, True):
        batch = pred.predict_batch(kws, return_logits=return_logits)
        assert len(batch) == len(kws)
        for kw, got in zip(kws, batch):
            want = pred.predict(**kw, return_logits=return_logits)
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and g.shape == w.shape
                np.testing.assert_allclose(g, w, atol=1e-5)
    # multimask_output default for prompts that do not say.
    bare = [{"point_coords": [[300, 200]], "point_labels": [1]}]
    assert pred.predict_batch(bare, multimask_output=False)[0][0].shape == (1, 400, 600)
    assert pred.predict_batch([]) == []


def test_official_argument_forms(sam, manifest):
    """What numpy users pass to the official predictor: int/float32 coordinates, lists,
    a (1, 4) box, BGR images; outputs C = 1 without multimask."""
    pred = embedded(sam, manifest, "coffee")
    base = pred.predict(point_coords=np.array([[300.0, 200.0]]), point_labels=np.array([1]))
    for coords in (np.array([[300, 200]]), np.array([[300, 200]], np.float32), [[300, 200]]):
        got = pred.predict(point_coords=coords, point_labels=[1])
        np.testing.assert_array_equal(got[0], base[0])
    box = np.array([100, 80, 420, 300])
    a = pred.predict(box=box, multimask_output=False)
    b = pred.predict(box=box[None, :], multimask_output=False)
    assert a[0].shape == (1, 400, 600) and a[1].shape == (1,) and a[2].shape == (1, 256, 256)
    np.testing.assert_array_equal(a[0], b[0])
    # No prompt at all is valid for the official model too.
    assert pred.predict()[0].shape == (3, 400, 600)
    # A mask input as the official (1, 256, 256) or plainly (256, 256).
    m = base[2][np.argmax(base[1])]
    c = pred.predict(point_coords=[[300, 200]], point_labels=[1], mask_input=m[None])
    d = pred.predict(point_coords=[[300, 200]], point_labels=[1], mask_input=m)
    np.testing.assert_array_equal(c[0], d[0])


def test_bgr_and_strided_images(sam):
    img = image("chelsea.png")
    p_rgb, p_bgr, p_view = (samrt.SamPredictor(sam) for _ in range(3))
    p_rgb.set_image(img)
    p_bgr.set_image(np.ascontiguousarray(img[..., ::-1]), image_format="BGR")
    p_view.set_image(img[..., ::-1][..., ::-1])  # a strided view of the same pixels
    for other in (p_bgr, p_view):
        np.testing.assert_array_equal(other.get_image_embedding(), p_rgb.get_image_embedding())


def test_reset_image(sam, manifest):
    pred = samrt.SamPredictor(sam)
    assert not pred.is_image_set and pred.original_size is None and pred.input_size is None
    src = embedded(sam, manifest, "camera")
    pred.set_embedding(src.get_image_embedding(), src.original_size)
    assert pred.is_image_set and pred.original_size == (512, 512)
    pred.reset_image()
    assert not pred.is_image_set and pred.features is None


def test_model_api(sam):
    assert sam.device == "cpu" and sam.to("cpu") is sam and sam.eval() is sam
    assert sam.image_format == "RGB" and sam.mask_threshold == 0.0
    assert sam.image_encoder.img_size == 1024
    cfg = sam.config
    assert (cfg["embed_dim"], cfg["depth"], cfg["model_type"]) == (160, 4, None)
    assert samrt.SamPredictor(sam).device == "cpu"


def test_embedding_files_round_trip_in_the_cli_format(sam, manifest, tmp_path):
    """save_embedding/load_embedding use `samrt embed`'s files; decoding from a loaded
    embedding is bit-identical, and another model's or a damaged file is refused."""
    src = embedded(sam, manifest, "coffee")
    kw = {"point_coords": np.array([[300.0, 200.0]]), "point_labels": np.array([1])}
    want = src.predict(**kw)
    for ext in ("safetensors", "npy"):
        f = tmp_path / f"emb.{ext}"
        src.save_embedding(f)
        p = samrt.SamPredictor(sam)
        p.load_embedding(f)
        assert p.original_size == src.original_size and p.input_size == src.input_size
        for a, b in zip(want, p.predict(**kw)):
            np.testing.assert_array_equal(a, b)
    assert (tmp_path / "emb.json").is_file()
    meta = (tmp_path / "emb.json").read_text()
    foreign = meta.replace('"model_fingerprint": "', '"model_fingerprint": "0')
    (tmp_path / "emb.json").write_text(foreign)
    with pytest.raises(ValueError, match="another model"):
        samrt.SamPredictor(sam).load_embedding(tmp_path / "emb.npy")
    np.save(tmp_path / "plain.npy", np.ones((1, 256, 64, 64), np.float32))
    with pytest.raises(FileNotFoundError, match="plain.json"):
        samrt.SamPredictor(sam).load_embedding(tmp_path / "plain.npy")
    with pytest.raises(ValueError, match="must end in .safetensors or .npy"):
        samrt.SamPredictor(sam).load_embedding(tmp_path / "emb.bin")
