"""`Split`: one split of a dataset, labels and ids in memory, pixels decoded on demand."""

import dataclasses

import numpy as np

from bottleneck_cache.pipeline.datasets import decoding
from bottleneck_cache.pipeline.datasets import errors


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: labels and ids in memory; pixels decoded on demand.

    Exactly one of `paths` (file formats) and `images` (array formats) is set.

    Attributes:
        name: "train" or "validation".
        class_names: `(num_classes,)` names; index = label.
        labels: `(num_samples,)` int64 in `[0, num_classes)`.
        ids: `(num_samples,)` stable id per sample: the path relative to the dataset root for file
            formats (forward slashes, e.g. "train/cat/cat_0.jpg"), "<source file>#<index>" for array
            formats (e.g. "data_batch_1#17", "digits#12").
        paths: `(num_samples,)` absolute image paths for file formats, else None.
        images: `(num_samples, h, w)` or `(num_samples, h, w, c)` uint8 with c in {1, 3, 4} for array
            formats, else None.
        seeded: True when a seeded choice (`split_validation`, `select_per_class`) picked the
            samples, so that the seed is part of what the split is.
    """

    name: str
    class_names: tuple[str, ...]
    labels: np.ndarray
    ids: tuple[str, ...]
    paths: tuple[str, ...] | None = None
    images: np.ndarray | None = None
    seeded: bool = False

    def __post_init__(self):
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise errors.DatasetError(
                f"Expected split '{self.name}' labels to be integers of shape (num_samples,). "
                f"Received: dtype {labels.dtype}, shape {labels.shape}."
            )
        labels = labels.astype(np.int64, copy=False)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        object.__setattr__(self, "ids", tuple(self.ids))
        if (self.paths is None) == (self.images is None):
            raise errors.DatasetError(
                f"Expected split '{self.name}' to have exactly one of `paths` (file formats) and `images` "
                f"(array formats). Received: {'both' if self.paths is not None else 'neither'}."
            )
        sizes = {"labels": len(labels), "ids": len(self.ids)}
        if self.paths is not None:
            object.__setattr__(self, "paths", tuple(self.paths))
            sizes["paths"] = len(self.paths)
        else:
            _check_image_array(self.images, f"split '{self.name}' images")
            sizes["images"] = len(self.images)
        if len(set(sizes.values())) != 1:
            raise errors.DatasetError(
                f"Expected split '{self.name}' to have one label, id and image per sample. "
                f"Received lengths: {sizes}."
            )
        _check_labels(labels, self.class_names, f"split '{self.name}'")

    def __len__(self):
        return len(self.labels)

    @property
    def num_classes(self):
        """The number of classes, `len(class_names)`."""
        return len(self.class_names)

    def subset(self, indices):
        """Returns the samples at `indices`, in the order of `indices`.

        Args:
            indices: `(k,)` integer positions into this split (or a boolean mask of length `len(self)`).

        Returns:
            A `Split` with the same `name` and `class_names` and `k` samples.
        """
        indices = self._indices(indices)
        return Split(
            name=self.name,
            class_names=self.class_names,
            labels=self.labels[indices],
            ids=tuple(self.ids[i] for i in indices),
            paths=None if self.paths is None else tuple(self.paths[i] for i in indices),
            images=None if self.images is None else self.images[indices],
            seeded=self.seeded,
        )

    def load(self, indices, image_size):
        """Decodes, converts to RGB and resizes the samples at `indices`.

        Grey, grey+alpha, RGBA, palette, CMYK and 16-bit images all become 8-bit RGB (alpha is
        dropped). Every image is resized with bilinear filtering to exactly `image_size`, ignoring the
        aspect ratio (as Keras' `image_dataset_from_directory` does by default).

        Args:
            indices: `(k,)` integer positions into this split.
            image_size: `(height, width)` of the returned images.

        Returns:
            `(k, height, width, 3)` uint8 array.

        Raises:
            DatasetError: an image file cannot be decoded (the message names the file).
        """
        size = decoding.check_image_size(image_size)
        indices = self._indices(indices)
        batch = np.empty((len(indices), *size, 3), dtype=np.uint8)
        for row, index in enumerate(indices):
            batch[row] = self.image(index, size)
        return batch

    def image(self, index, image_size):
        """Decodes the sample at position `index` to a `(height, width, 3)` uint8 RGB array.

        Args:
            index: a position into this split.
            image_size: `(height, width)` of the returned image, two positive ints (`load` and
                `decode_images` check it first).

        Raises:
            DatasetError: the image file cannot be decoded (the message names the file).
        """
        if self.paths is not None:
            return decoding.load_image_file(self.paths[index], image_size)
        return decoding.resize_rgb(decoding.array_to_rgb(self.images[index]), image_size)

    def _indices(self, indices):
        """Checks `indices` and returns them as a `(k,)` int64 array."""
        array = np.asarray(indices)
        if array.dtype == bool:
            if array.shape != (len(self),):
                raise errors.DatasetError(
                    f"Expected a boolean mask of shape ({len(self)},) for split '{self.name}'. "
                    f"Received: shape {array.shape}."
                )
            return np.flatnonzero(array)
        if array.size == 0:
            return np.zeros((0,), dtype=np.int64)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise errors.DatasetError(
                f"Expected indices to be a 1-D sequence of integers. "
                f"Received: dtype {array.dtype}, shape {array.shape}."
            )
        if array.min() < 0 or array.max() >= len(self):
            raise errors.DatasetError(
                f"Expected indices in [0, {len(self)}) for split '{self.name}'. "
                f"Received: values from {array.min()} to {array.max()}."
            )
        return array.astype(np.int64, copy=False)


def _check_labels(labels, class_names, source):
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise errors.DatasetError(
            f"Expected labels of {source} in [0, {len(class_names)}) for {len(class_names)} classes. "
            f"Received: labels from {labels.min()} to {labels.max()}. Fix the labels or the class names."
        )


def _check_image_array(images, source):
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim not in (3, 4)
        or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4))
    ):
        received = (
            f"dtype {images.dtype}, shape {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        )
        raise errors.DatasetError(
            f"Expected {source} to be a uint8 array of shape (num_samples, height, width) or "
            f"(num_samples, height, width, 1|3|4). Received: {received}."
        )
