"""Loading models: ``samrt.load`` and the official ``sam_model_registry`` / ``build_sam_*``."""

import logging
import os
import types

from . import _samrt

_log = logging.getLogger("samrt")


class Sam:
    """A loaded SAM model, shared by any number of predictors, generators and threads.

    Stands in for the official ``segment_anything.modeling.Sam`` where user code touches
    it: ``to(device)``, ``eval()``, ``device``, ``image_format``, ``mask_threshold`` and
    ``image_encoder.img_size``. The configuration is inferred from the checkpoint.
    """

    image_format = "RGB"
    mask_threshold = 0.0

    def __init__(self, checkpoint, device="cpu"):
        self._path = os.fspath(checkpoint)
        self._core = _samrt.Model(self._path, _device_name(device))
        if self._core.load_message:
            _log.info("%s", self._core.load_message)
        self.image_encoder = types.SimpleNamespace(img_size=self._core.config["img_size"])

    @property
    def device(self):
        """Where the image encoder runs: ``"cpu"`` or ``"cuda:N"``."""
        return self._core.device

    @property
    def config(self):
        """The inferred configuration (``model_type`` is ``"vit_b"``/``"vit_l"``/``"vit_h"``
        or None for a non-standard size)."""
        return self._core.config

    def to(self, device=None):
        """Moves the image encoder, like ``torch.nn.Module.to``: in place, returns self.
        Predictors made from this model follow it; their embeddings stay valid."""
        if device is None:
            return self
        name = _device_name(device)
        if _same_device(name, self._core.device):
            return self
        self._core = _samrt.Model(self._path, name)
        return self

    def eval(self):
        """Inference only, always: kept so that ``sam.eval()`` works unchanged."""
        return self

    def __repr__(self):
        t = self.config["model_type"] or "custom"
        return f"samrt.Sam({t}, device={self.device!r}, checkpoint={self._path!r})"


def _device_name(device):
    """torch-style device (``"cuda"``, ``"cuda:1"``, a ``torch.device``) as a string."""
    return str(device)


def _same_device(asked, current):
    return asked == current or (asked == "cuda" and current == "cuda:0")


def load(checkpoint, device="cpu"):
    """Loads an official ``.pth`` or a samrt safetensors file; the configuration (ViT-B/L/H
    or any other size) is inferred from the tensor shapes."""
    return Sam(checkpoint, device)


def _builder(model_type):
    def build(checkpoint=None, device="cpu"):
        if checkpoint is None:
            raise ValueError(
                "samrt builds models from trained weights only: pass checkpoint=<.pth or "
                ".safetensors path>"
            )
        sam = Sam(checkpoint, device)
        got = sam.config["model_type"]
        if got != model_type:
            raise ValueError(
                f"{os.fspath(checkpoint)} holds a {got or 'non-standard'} model, "
                f"not {model_type}"
            )
        return sam

    build.__name__ = f"build_sam_{model_type}"
    build.__doc__ = f"Loads a {model_type} checkpoint (an error if it is another size)."
    return build


build_sam_vit_h = _builder("vit_h")
build_sam_vit_l = _builder("vit_l")
build_sam_vit_b = _builder("vit_b")
build_sam = build_sam_vit_h

sam_model_registry = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
}
