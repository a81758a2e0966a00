"""Bad input raises a Python exception with samrt's message (ValueError for bad values,
RuntimeError for misuse or an unavailable device, OSError for files); the interpreter
survives every case."""

import os
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, embedded

import samrt
from samrt import _samrt


@pytest.fixture
def pred(sam, manifest):
    return embedded(sam, manifest, "coffee")


PT = np.array([[300.0, 200.0]])
LB = np.array([1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(point_coords=np.array([[np.nan, 3.0]]), point_labels=LB), "not finite"),
        (dict(point_coords=np.array([[np.inf, 3.0]]), point_labels=LB), "not finite"),
        (dict(point_coords=PT), "point_labels must be supplied"),
        (dict(point_coords=PT, point_labels=np.array([1, 0])), "1 point_coords but 2"),
        (dict(point_coords=PT, point_labels=np.array([2])), "label 2"),
        (dict(point_coords=PT, point_labels=np.array([0.5])), "integers"),
        (dict(point_coords=PT, point_labels=np.array([[1]])), r"shape \(N,\)"),
        (dict(point_coords=np.array([300.0, 200.0]), point_labels=LB), r"shape \(N, 2\)"),
        (dict(point_coords=np.array([[1, 2, 3]]), point_labels=LB), r"shape \(N, 2\)"),
        (dict(point_coords=np.array([["a", "b"]]), point_labels=LB), "numeric"),
        (dict(point_coords=np.array([[1 + 2j, 3]]), point_labels=LB), "numeric"),
        (dict(box=np.array([1.0, 2.0, 3.0])), r"box must have shape \(4,\)"),
        (dict(box=np.array([1.0, np.nan, 3.0, 4.0])), "not finite"),
        (dict(mask_input=np.zeros((1, 64, 64), np.float32)), r"shape \(1, 256, 256\)"),
        (dict(mask_input=np.full((1, 256, 256), np.nan, np.float32)), "NaN"),
    ],
)
def test_bad_prompts_raise_value_error(pred, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pred.predict(**kwargs)
    with pytest.raises(ValueError, match=match):
        pred.predict_batch([kwargs])


def test_predict_batch_bad_entries(pred):
    with pytest.raises(ValueError, match="unknown keys"):
        pred.predict_batch([{"points": PT}])
    with pytest.raises(ValueError, match="must be a dict"):
        pred.predict_batch([PT])


def test_predict_before_set_image(sam):
    p = samrt.SamPredictor(sam)
    with pytest.raises(RuntimeError, match=r"must be set with \.set_image"):
        p.predict(point_coords=PT, point_labels=LB)
    with pytest.raises(RuntimeError, match=r"must be set with \.set_image"):
        p.predict_batch([])
    with pytest.raises(RuntimeError, match="to generate an embedding"):
        p.get_image_embedding()


@pytest.mark.parametrize(
    "img, match",
    [
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 3), np.uint16), "uint8"),
        (np.zeros((32, 32), np.uint8), "shape"),
        (np.zeros((32, 32, 4), np.uint8), "shape"),
        (np.zeros((0, 32, 3), np.uint8), "outside 1"),
        (np.zeros((1, 5000, 3), np.uint8), "cannot be resized"),
    ],
)
def test_bad_images(sam, img, match):
    p = samrt.SamPredictor(sam)
    with pytest.raises(ValueError, match=match):
        p.set_image(img)
    assert not p.is_image_set
    with pytest.raises(ValueError, match=match):
        samrt.SamAutomaticMaskGenerator(sam).generate(img)


def test_bad_image_format(sam):
    with pytest.raises(ValueError, match="image_format"):
        samrt.SamPredictor(sam).set_image(np.zeros((8, 8, 3), np.uint8), image_format="HSV")


def test_bad_embeddings(sam):
    p = samrt.SamPredictor(sam)
    good = np.zeros((1, 256, 64, 64), np.float32)
    with pytest.raises(ValueError, match="shape"):
        p.set_embedding(np.zeros((1, 256, 32, 32), np.float32), (100, 100))
    with pytest.raises(ValueError, match="NaN"):
        p.set_embedding(np.full((256, 64, 64), np.nan, np.float32), (100, 100))
    with pytest.raises(ValueError, match="original_size"):
        p.set_embedding(good, (0, 100))
    with pytest.raises(ValueError, match="original_size"):
        p.set_embedding(good, (100,))
    with pytest.raises(ValueError, match="outside"):
        p.set_embedding(good, (10**6, 10))
    with pytest.raises(ValueError, match="input_size"):
        p.set_embedding(good, (100, 100), (2000, 1024))
    assert not p.is_image_set


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError):
        samrt.load(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="neither a PyTorch zip checkpoint nor"):
        samrt.load(junk)
    # A truncated official-layout .pth: the zip directory is gone.
    data = (FIXTURES / "sam_tiny.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        samrt.load(cut)
    # Every corrupt fixture of the Rust checkpoint tests.
    for f in sorted((FIXTURES / "pth").glob("*.pth")):
        shutil.copy(f, tmp_path / f.name)
        try:
            samrt.load(tmp_path / f.name)
        except (ValueError, RuntimeError, OSError):
            pass
    assert os.path.exists(FIXTURES / "sam_tiny.pth")


def test_registry(tmp_path):
    with pytest.raises(ValueError, match="checkpoint="):
        samrt.sam_model_registry["vit_b"]()
    with pytest.raises(ValueError, match="non-standard model, not vit_b"):
        samrt.sam_model_registry["vit_b"](checkpoint=FIXTURES / "sam_tiny.pth")
    assert set(samrt.sam_model_registry) == {"default", "vit_h", "vit_l", "vit_b"}


def test_devices(sam):
    with pytest.raises(ValueError, match="unknown device"):
        samrt.load(FIXTURES / "sam_tiny.pth", device="tpu")
    with pytest.raises(ValueError, match="unknown device"):
        samrt.load(FIXTURES / "sam_tiny.pth", device="cuda:x")
    if not samrt.CUDA_BUILT:
        with pytest.raises(RuntimeError, match="without CUDA support"):
            samrt.load(FIXTURES / "sam_tiny.pth", device="cuda")
        with pytest.raises(RuntimeError, match="without CUDA support"):
            sam.to("cuda")
        assert sam.device == "cpu"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(output_mode="png"), "Unknown output_mode"),
        (dict(points_per_side=None), "Exactly one of"),
        (dict(point_grids=[np.zeros((4, 2))]), "Exactly one of"),
        (dict(points_per_side=0), "0 points per side"),
        (dict(points_per_side=100000), "point prompts per image"),
        (dict(points_per_side=4, crop_n_layers=1, crop_n_points_downscale_factor=0), "positive"),
    ],
)
def test_generator_bad_arguments(sam, kwargs, match):
    with pytest.raises(ValueError, match=match):
        samrt.SamAutomaticMaskGenerator(sam, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points_per_batch=0), "points_per_batch must be at least 1"),
        (dict(crop_n_layers=-1), "crop_n_layers must be at least 0"),
        (dict(crop_overlap_ratio=1.5), "crop_overlap_ratio"),
        (dict(pred_iou_thresh=float("nan")), "finite"),
        (dict(min_mask_region_area=float("inf")), "finite"),
    ],
)
def test_generate_bad_settings(sam, kwargs, match):
    gen = samrt.SamAutomaticMaskGenerator(sam, points_per_side=2, **kwargs)
    with pytest.raises(ValueError, match=match):
        gen.generate(np.zeros((16, 16, 3), np.uint8))


def test_generate_bad_grids(sam):
    img = np.zeros((16, 16, 3), np.uint8)
    for grids, match in [
        ([np.zeros((3, 3))], r"shape \(N, 2\)"),
        ([np.zeros((0, 2))], "empty"),
        ([np.array([[np.nan, 0.5]])], "non-finite"),
    ]:
        gen = samrt.SamAutomaticMaskGenerator(sam, points_per_side=None, point_grids=grids)
        with pytest.raises(ValueError, match=match):
            gen.generate(img)
    gen = samrt.SamAutomaticMaskGenerator(
        sam, points_per_side=None, point_grids=[np.zeros((1, 2))], crop_n_layers=1
    )
    with pytest.raises(ValueError, match="needs 2 point grids"):
        gen.generate(img)


def test_extension_checks_its_own_arguments(sam):
    """The extension is callable directly: it checks shapes and layouts itself."""
    core = sam._core
    with pytest.raises(ValueError, match="C-contiguous"):
        core.embed(np.zeros((16, 16, 3), np.uint8)[::2])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        core.embed(np.zeros((16, 16, 4), np.uint8))
    emb = core.embedding_from_features(np.zeros((1, 256, 64, 64), np.float32), (64, 64))
    with pytest.raises(ValueError, match="point_labels must be supplied"):
        core.predict(emb, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="label"):
        core.predict(emb, np.zeros((1, 2)), np.array([2**40]))
    with pytest.raises(TypeError):
        core.predict(emb, np.zeros((1, 2), np.float32), np.array([1]))
    with pytest.raises(ValueError, match="iters"):
        core.time_predict(emb, (1.0, 1.0), 0)
    with pytest.raises(ValueError, match="output_mode"):
        _samrt.generate(core, np.zeros((8, 8, 3), np.uint8), [np.zeros((1, 2))], 64, 0.88,
                        0.95, 1.0, 0.7, 0, 0.7, 0.3, 0, "bitmap")


def test_absurd_requests_are_refused_before_allocating(sam):
    """What could only end in a failed allocation (an abort in Rust) is refused up front."""
    p = samrt.SamPredictor(sam)
    p.set_embedding(np.zeros((1, 256, 64, 64), np.float32), (20000, 20000))
    with pytest.raises(MemoryError, match="split the batch"):
        p.predict_batch([{"point_coords": PT, "point_labels": LB}] * 15)
    many = np.zeros((20000, 2))
    with pytest.raises(ValueError, match="the limit is 1024"):
        p.predict(point_coords=many, point_labels=np.ones(20000, np.int64))
