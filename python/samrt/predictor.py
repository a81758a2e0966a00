"""``SamPredictor``: the official predictor's API on samrt's model."""

import os

import numpy as np

from . import _args
from .build_sam import Sam

_PROMPT_KEYS = ("point_coords", "point_labels", "box", "mask_input", "multimask_output")


class SamPredictor:
    """Embeds an image once, then predicts masks for any number of prompts, answering like
    ``segment_anything.SamPredictor`` (same arguments, dtypes and shapes).

    The embedding is held as one immutable object that ``set_image`` replaces whole, so
    threads may call ``predict`` on a shared predictor, and predictors on a shared model,
    concurrently.
    """

    def __init__(self, sam_model):
        if not isinstance(sam_model, Sam):
            raise TypeError(
                f"SamPredictor needs a samrt.Sam (samrt.load / samrt.sam_model_registry), "
                f"got {type(sam_model).__name__}"
            )
        self.model = sam_model
        self._emb = None

    def set_image(self, image, image_format="RGB"):
        """Computes the embedding of an HxWx3 uint8 image in ``image_format`` (RGB or BGR)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be in ['RGB', 'BGR'], is {image_format}.")
        image = _args.image(image)
        if image_format != self.model.image_format:
            image = np.ascontiguousarray(image[..., ::-1])
        # As the official predictor: an image that fails to encode leaves none set.
        self._emb = None
        self._emb = self.model._core.embed(image)

    def set_embedding(self, embedding, original_size, input_size=None):
        """Restores a saved embedding (``get_image_embedding()``, float32 [1, 256, E, E]:
        [1, 256, 64, 64] for the official models) for an image of ``original_size`` (h, w)
        without re-encoding; another shape raises ``ValueError`` naming the model's.
        ``input_size`` defaults to the official resize of ``original_size`` to the model's
        input size."""
        feats = np.ascontiguousarray(_args.numeric(embedding, "embedding"), dtype=np.float32)
        emb = self.model._core.embedding_from_features(
            feats,
            _size(original_size, "original_size"),
            None if input_size is None else _size(input_size, "input_size"),
        )
        self._emb = emb

    def save_embedding(self, path):
        """Saves the current embedding to ``path`` (.safetensors, or .npy with a .json
        beside it), in the format of ``samrt embed``, tagged with the model's fingerprint."""
        emb = self._require("before saving the embedding")
        self.model._core.save_embedding(emb, os.fspath(path))

    def load_embedding(self, path):
        """Restores an embedding saved by ``save_embedding`` or ``samrt embed`` without
        re-encoding; one made by another model raises ``ValueError``."""
        self._emb = self.model._core.load_embedding(os.fspath(path))

    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output=True,
        return_logits=False,
    ):
        """Masks for one prompt on the current image.

        Returns ``(masks, iou_predictions, low_res_masks)``: masks [C, H, W] bool (float32
        logits with ``return_logits=True``), iou_predictions float32 [C], low_res_masks
        float32 [C, S, S]; C is 3 with ``multimask_output``, else 1. S is the model's
        low-res side, ``model.prompt_encoder.mask_input_size`` (256 for the official models,
        4x the embedding side); ``mask_input`` takes (1, S, S) or (S, S), e.g. one of an
        earlier prediction's ``low_res_masks``.
        """
        emb = self._require("before mask prediction")
        args = _args.prompt(point_coords, point_labels, box, mask_input)
        return self.model._core.predict(
            emb, *args, multimask_output=bool(multimask_output),
            return_logits=bool(return_logits),
        )

    def predict_batch(self, prompts, multimask_output=True, return_logits=False):
        """Many prompts on the current image in one call (shared image-side work, one GIL
        release). ``prompts`` is a list of dicts with ``predict``'s keyword arguments
        (``multimask_output`` per prompt overrides the default). Returns a list of
        ``predict`` results, in order."""
        emb = self._require("before mask prediction")
        batch = []
        for i, p in enumerate(prompts):
            if not isinstance(p, dict):
                raise ValueError(f"prompts[{i}] must be a dict of predict() arguments")
            unknown = set(p) - set(_PROMPT_KEYS)
            if unknown:
                raise ValueError(f"prompts[{i}] has unknown keys {sorted(unknown)}")
            args = _args.prompt(
                p.get("point_coords"), p.get("point_labels"), p.get("box"), p.get("mask_input")
            )
            batch.append(args + (bool(p.get("multimask_output", multimask_output)),))
        return self.model._core.predict_batch(emb, batch, return_logits=bool(return_logits))

    def get_image_embedding(self):
        """The current image's embedding, float32 [1, 256, E, E] with E the model's input
        size / 16 ([1, 256, 64, 64] for the official models; read-only: it is the
        predictor's own memory, shared without a copy)."""
        return self._require("to generate an embedding").features

    def reset_image(self):
        """Forgets the current image."""
        self._emb = None

    @property
    def is_image_set(self):
        return self._emb is not None

    @property
    def original_size(self):
        """(h, w) of the image as given, or None before ``set_image``."""
        emb = self._emb
        return None if emb is None else emb.original_size

    @property
    def input_size(self):
        """(h, w) after the longest-side resize to the model's input size
        (``model.image_encoder.img_size``, 1024 for the official models), or None before
        ``set_image``."""
        emb = self._emb
        return None if emb is None else emb.input_size

    @property
    def features(self):
        emb = self._emb
        return None if emb is None else emb.features

    @property
    def device(self):
        return self.model.device

    def _require(self, purpose):
        emb = self._emb
        if emb is None:
            raise RuntimeError(f"An image must be set with .set_image(...) {purpose}.")
        return emb


def _size(value, name):
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of integers (h, w), got {value!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got ({h}, {w})")
    return (h, w)
