"""Arrays of images and labels, as the array formats hold them, checked and turned into splits.

Nothing is clipped or guessed: labels must be whole numbers >= 0, images uint8 or numbers in 0..1
or 0..255.
"""

import numpy as np

from bottleneck_cache.pipeline.datasets import core
from bottleneck_cache.pipeline.datasets import errors


def default_class_names(*label_arrays):
    """Class names "0".."<largest label>" for datasets that name no classes."""
    top = max((int(labels.max()) for labels in label_arrays if labels.size), default=-1)
    return tuple(str(label) for label in range(top + 1))


def as_labels(values, source):
    """Converts `values` to `(num_samples,)` int64 labels, accepting `(num_samples, 1)` and whole floats."""
    labels = np.asarray(values)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise errors.DatasetError(
            f"Expected the labels in {source} to have shape (num_samples,) or (num_samples, 1). "
            f"Received: shape {labels.shape}. If they are one-hot, save labels.argmax(axis=1) instead."
        )
    floating = np.issubdtype(labels.dtype, np.floating)
    whole_floats = floating and bool(np.all(np.isfinite(labels) & (labels == np.round(labels))))
    if labels.dtype == bool or not (np.issubdtype(labels.dtype, np.integer) or whole_floats):
        raise errors.DatasetError(
            f"Expected the labels in {source} to be integers. Received: dtype {labels.dtype}. "
            f"Save the labels as an integer array of class indices."
        )
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise errors.DatasetError(
            f"Expected the labels in {source} to be >= 0. Received: a minimum of {labels.min()}. "
            f"Labels are class indices: renumber them from 0."
        )
    return labels


def as_uint8_images(values, source):
    """Converts `values` to uint8 images; floats in [0, 1] are scaled by 255, other values kept.

    Raises:
        DatasetError: the shape or dtype is not that of images, or a value is outside 0..255 (or
            not finite): nothing is clipped, since a clipped image is not the image that was saved.

    Returns:
        `(num_samples, h, w)` or `(num_samples, h, w, 1|3|4)` uint8 array.
    """
    images = np.asarray(values)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise errors.DatasetError(
            f"Expected the images in {source} to have shape (num_samples, height, width) or "
            f"(num_samples, height, width, 1|3|4). Received: shape {images.shape}."
        )
    if images.dtype == np.uint8:
        return images
    numeric = np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    if images.dtype == bool or not numeric:
        raise errors.DatasetError(
            f"Expected the images in {source} to be numeric. Received: dtype {images.dtype}. "
            f"Save them as uint8 (0..255) or float (0..1)."
        )
    if not images.size:
        return images.astype(np.uint8)
    finite = images[np.isfinite(images)] if np.issubdtype(images.dtype, np.floating) else images
    low, high = (finite.min(), finite.max()) if finite.size else (None, None)
    if finite.size < images.size or low < 0 or high > 255:
        received = f"{images.dtype} values from {low} to {high}" if finite.size else f"{images.dtype} values"
        non_finite = f", {images.size - finite.size} of them NaN or infinite" if finite.size < images.size else ""
        raise errors.DatasetError(
            f"Expected the images in {source} to be uint8, or numbers in 0..1 or 0..255. Received: "
            f"{received}{non_finite}. Nothing is clipped: rescale them to 0..255 (e.g. "
            f"(x - x.min()) / (x.max() - x.min()) * 255) and save them again."
        )
    if np.issubdtype(images.dtype, np.floating):
        if high <= 1:
            images = images * 255.0
        images = np.round(images)
    return images.astype(np.uint8)


def array_split(name, images, labels, class_names, source):
    """Builds an array-format split with ids "<source>#<index>"."""
    return core.Split(
        name=name,
        class_names=class_names,
        labels=labels,
        ids=tuple(f"{source}#{index}" for index in range(len(labels))),
        images=images,
    )


def check_counts(images, labels, source):
    """Refuses `images` and `labels` of different lengths (`source` names them in the message)."""
    if len(images) != len(labels):
        raise errors.DatasetError(
            f"Expected as many labels as images in {source}. Received: {len(images)} images and "
            f"{len(labels)} labels."
        )
