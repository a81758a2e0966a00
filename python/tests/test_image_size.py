"""Models run at another input size (``image_size=``): embeddings [1, 256, E, E], low-res
logits and mask inputs [C, 4E, 4E] follow the model, and every shape check names the shape
this model expects. The tiny 1024 fixture run at 256 (E = 16, low-res 64) keeps this fast."""

import re

import numpy as np
import pytest
from conftest import FIXTURES, embedded, image

import samrt

TINY = FIXTURES / "sam_tiny.pth"
PT = np.array([[300.0, 200.0]])
LB = np.array([1])


@pytest.fixture(scope="module")
def sam256():
    return samrt.load(TINY, image_size=256)


@pytest.fixture(scope="module")
def pred256(sam256):
    p = samrt.SamPredictor(sam256)
    p.set_image(image("coffee.png"))  # 400 x 600
    return p


def test_model_reports_its_size(sam256):
    assert sam256.image_encoder.img_size == 256
    assert sam256.config["img_size"] == 256
    pe = sam256.prompt_encoder
    assert pe.input_image_size == (256, 256)
    assert pe.image_embedding_size == (16, 16)
    assert pe.mask_input_size == (64, 64)
    assert "image_size=256" in repr(sam256)
    assert sam256.to("cpu") is sam256 and sam256.image_encoder.img_size == 256


def test_default_load_keeps_the_checkpoint_size(sam):
    assert sam.image_encoder.img_size == 1024 and sam.config["img_size"] == 1024
    assert sam.prompt_encoder.image_embedding_size == (64, 64)
    assert sam.prompt_encoder.mask_input_size == (256, 256)
    assert "image_size" not in repr(sam)


def test_embedding_shape(pred256):
    emb = pred256.get_image_embedding()
    assert emb.shape == (1, 256, 16, 16) and emb.dtype == np.float32
    assert not emb.flags.writeable
    assert pred256.features.shape == (1, 256, 16, 16)
    # The longest-side resize is to 256: 400 x 600 -> 171 x 256.
    assert pred256.original_size == (400, 600) and pred256.input_size == (171, 256)


def test_low_res_logits_follow_the_model(pred256):
    masks, scores, low = pred256.predict(point_coords=PT, point_labels=LB)
    assert masks.shape == (3, 400, 600) and masks.dtype == np.bool_
    assert scores.shape == (3,) and low.shape == (3, 64, 64) and low.dtype == np.float32
    one = pred256.predict(box=np.array([100, 80, 420, 300]), multimask_output=False)
    assert one[0].shape == (1, 400, 600) and one[2].shape == (1, 64, 64)
    logits, scores2, low2 = pred256.predict(point_coords=PT, point_labels=LB, return_logits=True)
    np.testing.assert_array_equal(logits > 0.0, masks)
    np.testing.assert_array_equal(scores, scores2)
    np.testing.assert_array_equal(low, low2)
    for return_logits in (False, True):
        (got,) = pred256.predict_batch(
            [{"point_coords": PT, "point_labels": LB}], return_logits=return_logits
        )
        want = pred256.predict(point_coords=PT, point_labels=LB, return_logits=return_logits)
        assert got[2].shape == (3, 64, 64)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-5)


def test_mask_input_of_the_models_size_is_accepted(pred256):
    masks, scores, low = pred256.predict(point_coords=PT, point_labels=LB)
    m = low[np.argmax(scores)]
    assert m.shape == (64, 64)
    a = pred256.predict(point_coords=PT, point_labels=LB, mask_input=m[None],
                        multimask_output=False)
    b = pred256.predict(point_coords=PT, point_labels=LB, mask_input=m, multimask_output=False)
    assert a[0].shape == (1, 400, 600) and a[2].shape == (1, 64, 64)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # The mask input is used: the prediction differs from the one without it.
    c = pred256.predict(point_coords=PT, point_labels=LB, multimask_output=False)
    assert not np.array_equal(a[2], c[2])
    (d,) = pred256.predict_batch(
        [{"point_coords": PT, "point_labels": LB, "mask_input": m[None],
          "multimask_output": False}]
    )
    np.testing.assert_allclose(d[2], a[2], atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 256, 256), (256, 256), (1, 64, 32), (2, 64, 64), (64,)])
def test_mask_input_of_another_size_is_refused(pred256, shape):
    got = re.escape(str(shape))
    match = (
        r"mask_input must have shape \(1, 64, 64\) for this model \(its low-res masks are 4x "
        rf"its 16x16 embedding\), got {got}"
    )
    with pytest.raises(ValueError, match=match):
        pred256.predict(point_coords=PT, point_labels=LB, mask_input=np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=match):
        pred256.predict_batch([{"mask_input": np.zeros(shape, np.float32)}])


def test_official_model_refuses_a_small_mask_input(sam, manifest):
    pred = embedded(sam, manifest, "coffee")
    match = (
        r"mask_input must have shape \(1, 256, 256\) for this model \(its low-res masks are "
        r"4x its 64x64 embedding\), got \(1, 64, 64\)"
    )
    with pytest.raises(ValueError, match=match):
        pred.predict(point_coords=PT, point_labels=LB, mask_input=np.zeros((1, 64, 64)))


def test_embeddings_must_fit_the_model(sam, sam256, pred256, manifest):
    # Restoring this model's own embedding is exact.
    again = samrt.SamPredictor(sam256)
    again.set_embedding(pred256.get_image_embedding(), pred256.original_size)
    assert again.input_size == (171, 256)
    for a, b in zip(pred256.predict(point_coords=PT, point_labels=LB),
                    again.predict(point_coords=PT, point_labels=LB)):
        np.testing.assert_array_equal(a, b)
    # The official-size embedding is refused, naming the shape this model takes, and the
    # other way round.
    with pytest.raises(ValueError, match=r"shape \(1, 256, 16, 16\) for this model"):
        again.set_embedding(np.zeros((1, 256, 64, 64), np.float32), (400, 600))
    with pytest.raises(ValueError, match=r"shape \(1, 256, 64, 64\) for this model"):
        samrt.SamPredictor(sam).set_embedding(pred256.get_image_embedding(), (400, 600))
    with pytest.raises(ValueError, match="input_size"):
        again.set_embedding(pred256.get_image_embedding(), (400, 600), (683, 1024))
    # An embedding object of one model handed to another's extension directly.
    emb1024 = embedded(sam, manifest, "coffee")._emb
    with pytest.raises(ValueError, match="another input size"):
        sam256._core.predict(emb1024, PT, LB)
    with pytest.raises(ValueError, match="another input size"):
        sam._core.predict(pred256._emb)


def test_embedding_files_carry_the_size(sam, sam256, pred256, tmp_path):
    f = tmp_path / "emb256.safetensors"
    pred256.save_embedding(f)
    p = samrt.SamPredictor(sam256)
    p.load_embedding(f)
    assert p.get_image_embedding().shape == (1, 256, 16, 16)
    np.testing.assert_array_equal(p.get_image_embedding(), pred256.get_image_embedding())
    # Same checkpoint (same fingerprint) at the official size: the shape gives it away.
    with pytest.raises(ValueError, match="16, 16"):
        samrt.SamPredictor(sam).load_embedding(f)


def test_explicit_checkpoint_size_equals_the_default(sam, manifest):
    pred = samrt.SamPredictor(samrt.load(TINY, image_size=1024))
    pred.set_image(image("coffee.png"))
    np.testing.assert_array_equal(
        pred.get_image_embedding(), embedded(sam, manifest, "coffee").get_image_embedding()
    )


def test_generator_at_256(sam256):
    gen = samrt.SamAutomaticMaskGenerator(
        sam256, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    records = gen.generate(image("coffee.png"))
    assert records
    for r in records:
        assert r["segmentation"].shape == (400, 600)


@pytest.mark.parametrize(
    "size, match",
    [
        (100, "multiple of the patch size 16"),
        (0, "positive integer"),
        (-16, "positive integer"),
        (2.5, "positive integer"),
        (True, "positive integer"),
        ("256", "positive integer"),
    ],
)
def test_bad_image_sizes(size, match):
    with pytest.raises(ValueError, match=match):
        samrt.load(TINY, image_size=size)


def test_registry_takes_image_size():
    # The tiny model is no official architecture at any size: the same refusal as without.
    with pytest.raises(ValueError, match="non-standard model, not vit_b"):
        samrt.sam_model_registry["vit_b"](checkpoint=TINY, image_size=256)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        samrt.sam_model_registry["vit_h"](checkpoint=TINY, image_size=100)
