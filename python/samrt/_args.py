"""Argument coercion shared by the predictor and the generator: the official API takes
loosely typed numpy input; the extension takes exact dtypes and shapes. Anything that does
not fit raises ValueError naming the argument."""

import numpy as np


def numeric(value, name):
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {a.dtype}")
    return a


def image(value):
    """HxWx3 uint8, C-contiguous (a copy only when the input is a strided view)."""
    a = np.asarray(value)
    if a.dtype != np.uint8:
        raise ValueError(f"image must be an HxWx3 uint8 array, got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image must be an HxWx3 uint8 array, got shape {a.shape}")
    return np.ascontiguousarray(a)


def point_coords(value):
    a = numeric(value, "point_coords").astype(np.float64, copy=False)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"point_coords must have shape (N, 2), got {a.shape}")
    return np.ascontiguousarray(a)


def point_labels(value):
    a = numeric(value, "point_labels")
    if a.ndim != 1:
        raise ValueError(f"point_labels must have shape (N,), got {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError("point_labels must be integers (1 foreground, 0 background)")
    elif a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError("point_labels must be 0 (background) or 1 (foreground)")
    return np.ascontiguousarray(a.astype(np.int64))


def box(value):
    a = numeric(value, "box").astype(np.float64, copy=False)
    if a.shape not in ((4,), (1, 4)):
        raise ValueError(f"box must have shape (4,) (XYXY), got {a.shape}")
    return np.ascontiguousarray(a.reshape(4))


def mask_input(value):
    """float32, C-contiguous. The shape, (1, S, S) or (S, S), is left to the extension: S is
    the model's low-res mask side (4x its embedding side: 256 for the official models), and
    the extension, which knows the model, names the shape it expects for any other."""
    a = numeric(value, "mask_input").astype(np.float32, copy=False)
    return np.asarray(a, order="C")  # unlike ascontiguousarray, keeps a 0-d shape


def prompt(point_coords_=None, point_labels_=None, box_=None, mask_input_=None):
    """The four prompt arguments of ``predict``, coerced (None stays None)."""
    if point_coords_ is not None and point_labels_ is None:
        raise ValueError("point_labels must be supplied if point_coords is supplied.")
    coords = labels = None
    if point_coords_ is not None:
        coords = point_coords(point_coords_)
        labels = point_labels(point_labels_)
        if len(coords) != len(labels):
            raise ValueError(f"{len(coords)} point_coords but {len(labels)} point_labels")
    return (
        coords,
        labels,
        None if box_ is None else box(box_),
        None if mask_input_ is None else mask_input(mask_input_),
    )
