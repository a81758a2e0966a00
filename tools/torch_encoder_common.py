"""Shared helper for the encoder parity/timing scripts: imports the official
ImageEncoderViT without running segment_anything/__init__.py, whose predictor and mask
generator need torchvision (not installed here)."""
import importlib.util
import sys
import types


def official_encoder_class():
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        pkg = types.ModuleType("segment_anything")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = pkg
    from segment_anything.modeling.image_encoder import ImageEncoderViT

    return ImageEncoderViT
