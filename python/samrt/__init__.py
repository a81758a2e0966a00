"""samrt: Segment Anything inference in Rust, with the official Python API and no PyTorch.

Switching existing code is one import line::

    from samrt import sam_model_registry, SamPredictor, SamAutomaticMaskGenerator

``SamPredictor`` and ``SamAutomaticMaskGenerator`` take the official arguments and return
the official dtypes, shapes and record dicts. Models load from the official ``.pth``
checkpoints (converted once into samrt's cache) or samrt's safetensors. Every computation
releases the GIL, so Python threads sharing one model run in parallel.
"""

from ._samrt import CUDA_BUILT, load_image
from .automatic_mask_generator import SamAutomaticMaskGenerator
from .build_sam import (
    Sam,
    build_sam,
    build_sam_vit_b,
    build_sam_vit_h,
    build_sam_vit_l,
    load,
    sam_model_registry,
)
from .predictor import SamPredictor

__version__ = "0.1.0"

__all__ = [
    "CUDA_BUILT",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "build_sam",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "load",
    "load_image",
    "sam_model_registry",
]
