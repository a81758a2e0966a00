"""Loading models: ``samrt.load`` and the official ``sam_model_registry`` / ``build_sam_*``."""

import logging
import operator
import os
import types

from . import _samrt

_log = logging.getLogger("samrt")


class Sam:
    """A loaded SAM model, shared by any number of predictors, generators and threads.

    Stands in for the official ``segment_anything.modeling.Sam`` where user code touches
    it: ``to(device)``, ``eval()``, ``device``, ``image_format``, ``mask_threshold``,
    ``image_encoder.img_size`` and ``prompt_encoder``'s sizes. The configuration is inferred
    from the checkpoint.

    ``image_size`` runs the checkpoint at another input side (a multiple of 16; default: its
    own, 1024 for the official models), e.g. 512 for speed: the position embeddings are
    resized, and embeddings ([1, 256, E, E], E = image_size / 16), low-res masks and mask
    inputs ([C, 4E, 4E]) follow. ``image_encoder.img_size`` reports the size it runs at.
    """

    image_format = "RGB"
    mask_threshold = 0.0

    def __init__(self, checkpoint, device="cpu", image_size=None):
        self._path = os.fspath(checkpoint)
        self._image_size = _image_size(image_size)
        self._core = _samrt.Model(self._path, _device_name(device), self._image_size)
        if self._core.load_message:
            _log.info("%s", self._core.load_message)
        img = self._core.config["img_size"]
        _, e, _ = self._core.embedding_shape
        low = self._core.low_res_side
        self.image_encoder = types.SimpleNamespace(img_size=img)
        # The official PromptEncoder's size attributes.
        self.prompt_encoder = types.SimpleNamespace(
            embed_dim=self._core.config["prompt_embed_dim"],
            input_image_size=(img, img),
            image_embedding_size=(e, e),
            mask_input_size=(low, low),
        )

    @property
    def device(self):
        """Where the image encoder runs: ``"cpu"`` or ``"cuda:N"``."""
        return self._core.device

    @property
    def config(self):
        """The inferred configuration: ``model_type`` is ``"vit_b"``/``"vit_l"``/``"vit_h"``
        (the architecture, at any input size) or None for a non-standard one; ``img_size`` is
        the input side the model runs at."""
        return self._core.config

    def to(self, device=None):
        """Moves the image encoder, like ``torch.nn.Module.to``: in place, returns self.
        Predictors made from this model follow it; their embeddings stay valid."""
        if device is None:
            return self
        name = _device_name(device)
        if _same_device(name, self._core.device):
            return self
        self._core = _samrt.Model(self._path, name, self._image_size)
        return self

    def eval(self):
        """Inference only, always: kept so that ``sam.eval()`` works unchanged."""
        return self

    def __repr__(self):
        t = self.config["model_type"] or "custom"
        size = "" if self._image_size is None else f", image_size={self._image_size}"
        return f"samrt.Sam({t}, device={self.device!r}{size}, checkpoint={self._path!r})"


def _image_size(value):
    """None (the checkpoint's own input size) or a positive int; the extension checks that
    it is a multiple of 16 within its limits."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"image_size must be a positive integer or None, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(
            f"image_size must be a positive integer or None, got {value!r}"
        ) from None
    if n < 1:
        raise ValueError(f"image_size must be a positive integer or None, got {n}")
    return n


def _device_name(device):
    """torch-style device (``"cuda"``, ``"cuda:1"``, a ``torch.device``) as a string."""
    return str(device)


def _same_device(asked, current):
    return asked == current or (asked == "cuda" and current == "cuda:0")


def load(checkpoint, device="cpu", image_size=None):
    """Loads an official ``.pth`` or a samrt safetensors file; the configuration (ViT-B/L/H
    or any other size) is inferred from the tensor shapes. ``image_size`` runs it at another
    input side (see ``Sam``)."""
    return Sam(checkpoint, device, image_size)


def _builder(model_type):
    def build(checkpoint=None, device="cpu", image_size=None):
        if checkpoint is None:
            raise ValueError(
                "samrt builds models from trained weights only: pass checkpoint=<.pth or "
                ".safetensors path>"
            )
        sam = Sam(checkpoint, device, image_size)
        got = sam.config["model_type"]
        if got != model_type:
            raise ValueError(
                f"{os.fspath(checkpoint)} holds a {got or 'non-standard'} model, "
                f"not {model_type}"
            )
        return sam

    build.__name__ = f"build_sam_{model_type}"
    build.__doc__ = (
        f"Loads a {model_type} checkpoint (an error if it is another architecture), at "
        f"``image_size`` if given (see ``Sam``)."
    )
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
