"""Shared fixtures: the tiny official-layout model and the official outputs stored under
tests/fixtures (tools/make_fixtures.py, tools/make_amg_fixtures.py). No PyTorch needed."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

# The .pth is converted once into samrt's cache: keep that out of the user's home.
os.environ.setdefault("SAMRT_CACHE_DIR", tempfile.mkdtemp(prefix="samrt-pytest-cache-"))

import samrt  # noqa: E402


@pytest.fixture(scope="session")
def manifest():
    return json.loads((FIXTURES / "manifest.json").read_text())


@pytest.fixture(scope="session")
def amg_manifest():
    return json.loads((FIXTURES / "amg" / "manifest.json").read_text())


@pytest.fixture(scope="session")
def sam():
    return samrt.load(FIXTURES / "sam_tiny.pth")


_IMAGES = {}


def image(name):
    """HxWx3 uint8 as np.array(Image.open(f).convert("RGB")), read once per session."""
    if name not in _IMAGES:
        _IMAGES[name] = samrt.load_image(str(FIXTURES / "images" / name))
    return _IMAGES[name]


_EMBEDDED = {}


def embedded(sam, manifest, name):
    """A predictor with image `name` set, built once per session and shared by tests that
    only read it (the embedding is immutable)."""
    if name not in _EMBEDDED:
        entry = next(i for i in manifest["images"] if i["name"] == name)
        p = samrt.SamPredictor(sam)
        p.set_image(image(Path(entry["file"]).name))
        _EMBEDDED[name] = p
    return _EMBEDDED[name]


def prompts_of(manifest, image_name):
    return [p for p in manifest["prompts"] if p["image"] == image_name]


def prompt_kwargs(p):
    """The official predict() arguments of a manifest prompt (float64 coordinates)."""
    kw = {"multimask_output": p["multimask"]}
    if p["points"] is not None:
        kw["point_coords"] = np.array(p["points"], dtype=np.float64)
        kw["point_labels"] = np.array(p["labels"])
    if p["box"] is not None:
        kw["box"] = np.array(p["box"], dtype=np.float64)
    if p["mask_input"] is not None:
        kw["mask_input"] = np.load(FIXTURES / p["mask_input"])
    return kw


def packed_masks(entry):
    """Official masks stored as np.packbits (MSB first) over bool [C, H, W]."""
    shape = entry["shape"]
    bits = np.unpackbits(np.load(FIXTURES / entry["file"]), bitorder="big")
    return bits[: int(np.prod(shape))].reshape(shape).astype(bool)
