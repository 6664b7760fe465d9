"""Image datasets: find, index and decode the images that stage one runs through a frozen network.

A dataset is loaded into one or two `Split`s ("train" and, when the dataset has one, "validation").
A split keeps its labels and ids in memory and decodes pixels on demand with `Split.load`, so a
folder of large photos costs only a list of paths until a batch is needed.

Supported formats (`FORMATS`):

* `folder`: `<root>/<class>/*.jpg`, or `<root>/train/<class>/...` (or `training/`) plus one of
  `val/`, `validation/`, `test/` with the same class folders. Beside split folders, any other
  top-level folder is refused (it would otherwise be taken for a class).
* `cifar10`: the CIFAR-10 python batches (`data_batch_1`..`5`, `test_batch`, `batches.meta`), read
  with an unpickler that accepts only plain data and NumPy arrays.
* `mnist`: IDX files, gzipped or not (`train-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte`, ...).
* `gtsrb`: the official GTSRB layout (`Final_Training/Images/000NN/*.ppm` with `GT-000NN.csv`,
  `Final_Test/Images/*.ppm` with `GT-final_test.csv`).
* `npz`: a NumPy archive with `x`, `y` or Keras-style `x_train`, `y_train`, `x_test`, `y_test`.
* `pickle`: Udacity-lab pickles, dicts with `features` and `labels` (`train.p`, `valid.p`).
* `digits`: scikit-learn's bundled 8x8 digits; needs no files.

Unpickling can run code. Udacity pickles (`pickle`) are read only with `allow_pickle=True`; the
CIFAR-10 batches are read with a data-only unpickler that refuses anything but dicts, lists, bytes and
NumPy arrays (with `allow_pickle=True`, with the plain unpickler).

This module uses NumPy, Pillow and scikit-learn only; it never imports TensorFlow.
"""

import csv
import dataclasses
import errno
import gzip
import logging
import os
import pickle
import re
import zipfile

import numpy as np
from PIL import Image

from bottleneck_cache.pipeline import checks

FORMATS = ("folder", "cifar10", "mnist", "gtsrb", "npz", "pickle", "digits")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
PICKLE_EXTENSIONS = (".p", ".pkl", ".pickle")
TRAIN_FOLDERS = ("train", "training")
VALIDATION_FOLDERS = ("val", "validation", "test")

CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_SUBFOLDER = "cifar-10-batches-py"
GTSRB_SUBFOLDER = "GTSRB"

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_MNIST_PATTERN = re.compile(r"^(?P<prefix>.+)-(?P<kind>images|labels)[.-]idx(?P<ndim>[13])-ubyte(?P<gz>\.gz)?$")
_MNIST_TRAIN_PREFIXES = ("train",)
_MNIST_VALIDATION_PREFIXES = ("t10k", "test")

_LAYOUTS = (
    "folder: class sub-folders of images (<root>/<class>/*.jpg), or train/ (or training/) plus val/, "
    "validation/ or test/, each holding the same class sub-folders",
    "cifar10: data_batch_1..5 and/or test_batch (possibly inside cifar-10-batches-py/)",
    "mnist: *-images-idx3-ubyte[.gz] with *-labels-idx1-ubyte[.gz]",
    "gtsrb: Final_Training/Images/000NN/ and/or Final_Test/",
    "npz: a .npz file",
    "pickle: a .p, .pkl or .pickle file, or a folder holding train.p plus valid.p or test.p",
)

_LOGGER = logging.getLogger(__name__)
_MAX_SHOWN = 5  # names quoted in one message

_PICKLE_HINT = (
    "Loading a pickle runs code stored in the file. Pass --allow_pickle (allow_pickle=True) only for "
    "files you trust, or convert the data to a .npz file or a folder of images."
)


class DatasetError(ValueError):
    """A dataset is missing, has an unexpected layout or holds invalid data."""


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
            raise DatasetError(
                f"Expected split '{self.name}' labels to be integers of shape (num_samples,). "
                f"Received: dtype {labels.dtype}, shape {labels.shape}."
            )
        labels = labels.astype(np.int64, copy=False)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        object.__setattr__(self, "ids", tuple(self.ids))
        if (self.paths is None) == (self.images is None):
            raise DatasetError(
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
            raise DatasetError(
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
        size = _check_image_size(image_size)
        indices = self._indices(indices)
        batch = np.empty((len(indices), *size, 3), dtype=np.uint8)
        for row, index in enumerate(indices):
            batch[row] = self.image(index, size)
        return batch

    def image(self, index, image_size):
        """Decodes the sample at position `index` to a `(height, width, 3)` uint8 RGB array.

        Args:
            index: a position into this split (not checked: `load` and `decode_images` check).
            image_size: `(height, width)` of the returned image.

        Raises:
            DatasetError: the image file cannot be decoded (the message names the file).
        """
        if self.paths is not None:
            return load_image_file(self.paths[index], image_size)
        return _resize_rgb(_array_to_rgb(self.images[index]), image_size)

    def _indices(self, indices):
        """Checks `indices` and returns them as a `(k,)` int64 array."""
        array = np.asarray(indices)
        if array.dtype == bool:
            if array.shape != (len(self),):
                raise DatasetError(
                    f"Expected a boolean mask of shape ({len(self)},) for split '{self.name}'. "
                    f"Received: shape {array.shape}."
                )
            return np.flatnonzero(array)
        if array.size == 0:
            return np.zeros((0,), dtype=np.int64)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise DatasetError(
                f"Expected indices to be a 1-D sequence of integers. "
                f"Received: dtype {array.dtype}, shape {array.shape}."
            )
        if array.min() < 0 or array.max() >= len(self):
            raise DatasetError(
                f"Expected indices in [0, {len(self)}) for split '{self.name}'. "
                f"Received: values from {array.min()} to {array.max()}."
            )
        return array.astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------------
# Public functions.


def detect_format(path):
    """Guesses the format of the dataset at `path` from its file name or folder layout.

    Args:
        path: a dataset file or folder.

    Returns:
        One of `FORMATS` other than "digits".

    Raises:
        DatasetError: `path` does not exist or matches no known layout.
    """
    _check_exists(path)
    if os.path.isfile(path):
        extension = os.path.splitext(path)[1].lower()
        if extension == ".npz":
            return "npz"
        if extension in PICKLE_EXTENSIONS:
            return "pickle"
        raise DatasetError(_unknown_layout_message(path, f"a file with extension '{extension}'"))
    if _cifar_folder(path) is not None:
        return "cifar10"
    if _mnist_files(path):
        return "mnist"
    if _gtsrb_folder(path) is not None:
        return "gtsrb"
    if _pickle_file_in(path, "train") is not None:
        return "pickle"
    if _visible_subfolders(path):
        return "folder"
    entries = sorted(name for name in os.listdir(path) if not name.startswith("."))
    shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
    received = f"a folder containing [{shown}]" if entries else "an empty folder"
    raise DatasetError(_unknown_layout_message(path, received))


def load_dataset(path, dataset_format=None, allow_pickle=False):
    """Loads the splits of a dataset.

    Args:
        path: a dataset file or folder; None loads scikit-learn's digits.
        dataset_format: one of `FORMATS`; None detects it with `detect_format`.
        allow_pickle: whether pickled formats ("cifar10", "pickle") may be loaded. Loading a pickle
            runs code from the file: only allow it for files you trust.

    Returns:
        `{"train": Split}` or `{"train": Split, "validation": Split}`; both splits share `class_names`.

    Raises:
        DatasetError: the path is missing, the format is unknown, the data is invalid, or a pickle
            would be loaded without `allow_pickle`.
    """
    if dataset_format is not None:
        dataset_format = str(dataset_format).strip().lower()
        if dataset_format not in FORMATS:
            raise DatasetError(
                f"Expected --dataset_format to be one of {', '.join(FORMATS)}. "
                f"Received: '{dataset_format}'. Pick one of those, or omit it to detect the format."
            )
    if path is None or dataset_format == "digits":
        if path is None and dataset_format not in (None, "digits"):
            raise DatasetError(
                f"Expected a dataset path for --dataset_format={dataset_format}. Received: no path. "
                f"Pass the dataset location, or use --dataset_format=digits for the bundled digits."
            )
        splits = {"train": _load_digits()}
    else:
        path = os.fspath(path)
        _check_exists(path)
        if dataset_format is None:
            dataset_format = detect_format(path)
        loader = {
            "folder": _load_folder,
            "cifar10": _load_cifar10,
            "mnist": _load_mnist,
            "gtsrb": _load_gtsrb,
            "npz": _load_npz,
            "pickle": _load_pickle,
        }[dataset_format]
        if dataset_format in ("cifar10", "pickle"):
            splits = loader(path, allow_pickle=allow_pickle)
        else:
            splits = loader(path)
        for split in splits.values():
            _check_text_names(split, path)
    return splits


def select_per_class(split, per_class, seed):
    """Keeps `per_class` examples of each class, chosen at random with a fixed seed.

    Each class draws from its own generator seeded with `(seed, label)`, so the examples picked
    for one class do not depend on the other classes.

    Args:
        split: the split to sample from.
        per_class: examples to keep per class; must be a positive integer.
        seed: seed of the per-class permutations.

    Returns:
        A `Split` of `num_classes * per_class` samples, in their original order.

    Raises:
        DatasetError: `per_class` is not positive, or a class has fewer than `per_class` examples.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise DatasetError(
            f"Expected per_class to be a positive integer. Received: {per_class!r}. "
            f"Pass --per_class >= 1, or leave it unset to keep every example."
        )
    chosen = []
    for label, class_name in enumerate(split.class_names):
        members = np.flatnonzero(split.labels == label)
        if len(members) < per_class:
            raise DatasetError(
                f"Expected at least {per_class} examples of class '{class_name}' (label {label}) in split "
                f"'{split.name}'. Received: {len(members)}. Lower --per_class to at most {len(members)} or add "
                f"examples of that class."
            )
        rng = np.random.default_rng([int(seed), label])
        chosen.append(members[rng.permutation(len(members))[:per_class]])
    indices = np.sort(np.concatenate(chosen)) if chosen else np.zeros((0,), dtype=np.int64)
    return dataclasses.replace(split.subset(indices), seeded=True)


def split_validation(split, fraction, seed):
    """Splits off a stratified validation set.

    Uses `sklearn.model_selection.train_test_split`, stratified by label when every class present
    has at least 2 examples.

    Args:
        split: the split to divide.
        fraction: share of the samples that goes to validation, in (0, 1).
        seed: `random_state` of the split.

    Returns:
        `(train, validation)` splits named "train" and "validation", each in original order.

    Raises:
        DatasetError: `fraction` is outside (0, 1), or the split is too small to divide.
    """
    from sklearn.model_selection import train_test_split

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 < fraction < 1:
        raise DatasetError(
            f"Expected the validation fraction to be a number strictly between 0 and 1. Received: {fraction!r}. "
            f"Pass e.g. --validation_split=0.2."
        )
    _, counts = np.unique(split.labels, return_counts=True)
    stratify = split.labels if len(counts) and counts.min() >= 2 else None
    try:
        train_indices, validation_indices = train_test_split(
            np.arange(len(split)), test_size=float(fraction), random_state=int(seed), stratify=stratify
        )
    except ValueError as error:
        raise DatasetError(
            f"Expected split '{split.name}' to be large enough to hold out a validation fraction of {fraction} "
            f"({'stratified by class' if stratify is not None else 'unstratified'}). Received: {len(split)} "
            f"samples in {len(counts)} classes; scikit-learn says: {error}. Change --validation_split or add "
            f"examples."
        ) from error
    train = dataclasses.replace(split.subset(np.sort(train_indices)), name="train", seeded=True)
    validation = dataclasses.replace(
        split.subset(np.sort(validation_indices)), name="validation", seeded=True)
    return train, validation


def prepare_splits(path, dataset_format=None, per_class=None, validation_split=0.2, seed=0, allow_pickle=False):
    """Loads a dataset and returns its training and validation splits.

    If the dataset has no validation split, one is carved out of the training split with
    `split_validation`. If `per_class` is set, only the training split is reduced to `per_class`
    examples per class; the validation split stays whole.

    Args:
        path: a dataset file or folder; None loads scikit-learn's digits.
        dataset_format: one of `FORMATS`; None detects it.
        per_class: examples per class to keep in the training split; None or 0 keeps all.
        validation_split: fraction of the training split to hold out when there is no validation split.
        seed: seed for the validation split and the per-class selection.
        allow_pickle: whether pickled formats may be loaded (only for files you trust).

    Returns:
        `{"train": Split, "validation": Split}`.

    Raises:
        DatasetError: the dataset cannot be loaded or has fewer than two classes.

    A class with images in only one of the two splits (e.g. a class of one image) is kept, and a
    warning says which split lacks it and what that means for training.
    """
    splits = load_dataset(path, dataset_format=dataset_format, allow_pickle=allow_pickle)
    train = splits["train"]
    check_two_classes(train, path)
    validation = splits.get("validation")
    if validation is None:
        train, validation = split_validation(train, validation_split, seed)
    if per_class:
        train = select_per_class(train, per_class, seed)
    for message in one_split_classes(train, validation):
        _LOGGER.warning(message)
    return {"train": train, "validation": validation}


def _images(count):
    return f"{count} image{'s' if count != 1 else ''}"


def check_two_classes(split, path):
    """Refuses a split whose samples belong to fewer than two classes.

    Args:
        split: the dataset's training split, as loaded.
        path: the dataset's location, for the message (None: the bundled digits).

    Raises:
        DatasetError: the samples hold fewer than two distinct labels.
    """
    present = np.unique(split.labels)
    if len(present) >= 2:
        return
    received = (f"1 class ({split.class_names[present[0]]!r})" if len(present) else "no samples")
    raise DatasetError(
        f"Expected at least two classes to train a classifier on. Received: {received} in "
        f"'{_shown(path or 'digits')}' ({len(split)} samples). Add a sub-folder of images per class "
        f"(<dataset>/<class>/*.jpg), or check that --dataset_dir names the dataset, not one class folder."
    )


def one_split_classes(train, validation):
    """Describes each class that has samples in one split but none in the other.

    Args:
        train: the training split.
        validation: the validation split, with the same `class_names`.

    Returns:
        A list of warning messages (empty when every class with samples is in both splits).
    """
    counts = {name: np.bincount(split.labels, minlength=train.num_classes)
              for name, split in (("train", train), ("validation", validation))}
    messages = []
    for present, absent, effect in (
        ("train", "validation", "it is trained on, but the validation accuracy does not measure it"),
        ("validation", "train", "the head never sees it in training, so it never predicts it"),
    ):
        lonely = np.flatnonzero((counts[present] > 0) & (counts[absent] == 0))
        if len(lonely):
            shown = ", ".join(f"{train.class_names[label]!r} ({_images(counts[present][label])})"
                              for label in lonely[:_MAX_SHOWN])
            more = f" and {len(lonely) - _MAX_SHOWN} more" if len(lonely) > _MAX_SHOWN else ""
            messages.append(
                f"{len(lonely)} class{'es' * (len(lonely) != 1)} only in the {present} split, none in the "
                f"{absent} split: {shown}{more}. {'They are' if len(lonely) != 1 else 'It is'} kept: "
                f"{effect}. Add images to "
                f"{'them' if len(lonely) != 1 else 'it'} (at least 2 per class when the validation split is "
                f"carved out with --validation_split) to have every class in both splits."
            )
    return messages


# --------------------------------------------------------------------------------------------------
# Checks shared by the loaders.


def _check_exists(path):
    if not os.path.exists(path):
        raise DatasetError(
            f"Expected an existing dataset file or folder. Received: '{path}', which does not exist. "
            f"Check the path, or omit it to use the bundled digits."
        )


def _shown(path):
    """`path` printable and storable as UTF-8: undecodable bytes of a file name become `\\xNN`."""
    return os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_text(name):
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text_names(split, path):
    """Refuses, before any work, names that the cache cannot store as UTF-8 text.

    On Linux a file name is any bytes; Python keeps those that are not UTF-8 as lone surrogates,
    which HDF5's UTF-8 strings reject. Files are named relative to the dataset at `path`.

    Raises:
        DatasetError: a class name or sample id (file name) is not valid UTF-8.
    """
    bad = [name for name in split.class_names if not _is_text(name)]
    bad += [name for name in split.ids if not _is_text(name)]
    if not bad:
        return
    shown = ", ".join(f"'{_shown(name)}'" for name in bad[:_MAX_SHOWN])
    more = f" and {len(bad) - _MAX_SHOWN} more" if len(bad) > _MAX_SHOWN else ""
    raise DatasetError(
        f"Expected file and folder names in UTF-8 (the cache stores them as text). Received: "
        f"{len(bad)} name{'s' * (len(bad) != 1)} in '{_shown(path)}' that {'are' if len(bad) != 1 else 'is'} "
        f"not: {shown}{more}. Rename {'them' if len(bad) != 1 else 'it'} to UTF-8 (e.g. convmv -r -f "
        f"latin1 -t utf-8 --notest '{_shown(path)}'), then run again."
    )


def _unknown_layout_message(path, received):
    layouts = "\n".join(f"  - {layout}" for layout in _LAYOUTS)
    return (
        f"Could not detect the format of the dataset at '{path}'. Expected one of these layouts:\n{layouts}\n"
        f"Received: {received}. Pass --dataset_format (one of {', '.join(FORMATS)}) to choose the format."
    )


def _check_labels(labels, class_names, source):
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DatasetError(
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
        raise DatasetError(
            f"Expected {source} to be a uint8 array of shape (num_samples, height, width) or "
            f"(num_samples, height, width, 1|3|4). Received: {received}."
        )


def _check_image_size(image_size):
    try:
        height, width = (int(value) for value in image_size)
        valid = height > 0 and width > 0 and tuple(image_size) == (height, width)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise DatasetError(
            f"Expected image_size to be (height, width) with two positive integers. Received: {image_size!r}."
        )
    return height, width


def _default_class_names(*label_arrays):
    top = max((int(labels.max()) for labels in label_arrays if labels.size), default=-1)
    return tuple(str(label) for label in range(top + 1))


def _as_labels(values, source):
    """Converts `values` to `(num_samples,)` int64 labels, accepting `(num_samples, 1)` and whole floats."""
    labels = np.asarray(values)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DatasetError(
            f"Expected the labels in {source} to have shape (num_samples,) or (num_samples, 1). "
            f"Received: shape {labels.shape}. If they are one-hot, save labels.argmax(axis=1) instead."
        )
    floating = np.issubdtype(labels.dtype, np.floating)
    whole_floats = floating and bool(np.all(np.isfinite(labels) & (labels == np.round(labels))))
    if labels.dtype == bool or not (np.issubdtype(labels.dtype, np.integer) or whole_floats):
        raise DatasetError(
            f"Expected the labels in {source} to be integers. Received: dtype {labels.dtype}. "
            f"Save the labels as an integer array of class indices."
        )
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DatasetError(
            f"Expected the labels in {source} to be >= 0. Received: a minimum of {labels.min()}. "
            f"Labels are class indices: renumber them from 0."
        )
    return labels


def _as_uint8_images(values, source):
    """Converts `values` to uint8 images; floats in [0, 1] are scaled by 255, other values kept.

    Raises:
        DatasetError: the shape or dtype is not that of images, or a value is outside 0..255 (or
            not finite): nothing is clipped, since a clipped image is not the image that was saved.

    Returns:
        `(num_samples, h, w)` or `(num_samples, h, w, 1|3|4)` uint8 array.
    """
    images = np.asarray(values)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise DatasetError(
            f"Expected the images in {source} to have shape (num_samples, height, width) or "
            f"(num_samples, height, width, 1|3|4). Received: shape {images.shape}."
        )
    if images.dtype == np.uint8:
        return images
    numeric = np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    if images.dtype == bool or not numeric:
        raise DatasetError(
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
        raise DatasetError(
            f"Expected the images in {source} to be uint8, or numbers in 0..1 or 0..255. Received: "
            f"{received}{non_finite}. Nothing is clipped: rescale them to 0..255 (e.g. "
            f"(x - x.min()) / (x.max() - x.min()) * 255) and save them again."
        )
    if np.issubdtype(images.dtype, np.floating):
        if high <= 1:
            images = images * 255.0
        images = np.round(images)
    return images.astype(np.uint8)


def _array_split(name, images, labels, class_names, source):
    """Builds an array-format split with ids "<source>#<index>"."""
    return Split(
        name=name,
        class_names=class_names,
        labels=labels,
        ids=tuple(f"{source}#{index}" for index in range(len(labels))),
        images=images,
    )


def _check_counts(images, labels, source):
    if len(images) != len(labels):
        raise DatasetError(
            f"Expected as many labels as images in {source}. Received: {len(images)} images and "
            f"{len(labels)} labels."
        )


def _require_pickle(allow_pickle, path):
    if not allow_pickle:
        raise DatasetError(
            f"Expected allow_pickle=True to load the pickled dataset at '{path}'. Received: allow_pickle=False. "
            f"{_PICKLE_HINT}"
        )


# The only globals a pickle of plain data (dicts, lists, bytes, NumPy arrays) needs.
_DATA_ONLY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global other than plain data: loading it could run code."""


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays; refuses every other global, so runs no code."""

    def find_class(self, module, name):
        if (module, name) in _DATA_ONLY_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"it refers to {module}.{name}, which is not plain data")


def _unpickle(path, encoding, allow_pickle=False):
    """Loads a pickle: any pickle with `allow_pickle`, else plain data and NumPy arrays only."""
    try:
        with open(path, "rb") as f:
            if allow_pickle:
                return pickle.load(f, encoding=encoding)
            return _DataOnlyUnpickler(f, encoding=encoding).load()
    except Exception as error:  # Unpickling can raise almost anything.
        hint = "" if allow_pickle else f" {_PICKLE_HINT}"
        raise DatasetError(
            f"Expected '{path}' to be a readable pickle of plain data. Received: "
            f"{type(error).__name__}: {str(error).rstrip('.')}.{hint}"
        ) from error


def load_data_pickle(source, encoding="latin1"):
    """Loads a pickle of plain data and NumPy arrays only; no code stored in it can run.

    Any global the pickle names other than NumPy's array and dtype constructors
    is refused before it is called (`UnsafePickleError` naming it).

    Args:
        source: a path, or a binary file object positioned at the pickle.
        encoding: how to decode Python 2 strings (`"latin1"` keeps NumPy data intact).

    Raises:
        UnsafePickleError: the pickle refers to something other than plain data.
        Exception: whatever a truncated or malformed pickle raises.
    """
    if hasattr(source, "read"):
        return _DataOnlyUnpickler(source, encoding=encoding).load()
    with open(source, "rb") as f:
        return _DataOnlyUnpickler(f, encoding=encoding).load()


def _get(mapping, key, path):
    """Returns `mapping[key]`, accepting `str` or `bytes` keys (pickles from Python 2 have bytes)."""
    if isinstance(mapping, dict):
        for candidate in (key, key.encode()):
            if candidate in mapping:
                return mapping[candidate]
    keys = sorted(str(k) for k in mapping) if isinstance(mapping, dict) else type(mapping).__name__
    raise DatasetError(f"Expected '{path}' to hold a dict with key '{key}'. Received: {keys}.")


# --------------------------------------------------------------------------------------------------
# Image decoding.


def load_image_file(path, size):
    """Decodes `path` to a `(height, width, 3)` uint8 RGB array of `size = (height, width)`."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(
            f"Expected '{_shown(path)}' to be a readable image. Received: {_failure(path, error)}. "
            f"{'Remove the link or point it at an image' if os.path.islink(path) else 'Remove or replace the file'}."
        ) from error
    return _resize_rgb(rgb, size)


def _failure(path, error):
    """What went wrong opening `path`: a dangling symbolic link, a link loop, or `error` itself."""
    if os.path.islink(path):
        target = _shown(os.readlink(path))
        if getattr(error, "errno", None) == errno.ELOOP:
            return f"a symbolic link loop ('{target}' leads back to itself, never to a file)"
        if not os.path.exists(path):
            return f"a symbolic link to '{target}', which does not exist"
    return _shown(f"{type(error).__name__}: {error}")


def to_rgb(image):
    """Converts a decoded PIL image of any mode to an RGB PIL image with 8 bits per channel."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "I" or mode.startswith("I;16"):
        # 16-bit grey (PNG/TIFF) opens as "I;16*" or "I": keep the top 8 of 16 bits.
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values.size and values.min() >= 0 and values.max() <= 1:
            values = values * 255.0
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "PA" or (mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # Avoids Pillow's palette-transparency warning.
    return image.convert("RGB")


def _array_to_rgb(image):
    """`(h, w)`, `(h, w, 1)`, `(h, w, 3)` or `(h, w, 4)` uint8 -> `(h, w, 3)` uint8 (alpha dropped)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[:, :, :3]


def _resize_rgb(image, size):
    """Resizes a PIL image or `(h, w, 3)` array to a `(height, width, 3)` uint8 array, bilinear."""
    height, width = size
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (height, width):
            return image
        image = Image.fromarray(np.ascontiguousarray(image))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedImages:
    """A batch of decoded images, and the images left out because they could not be decoded.

    Attributes:
        images: `(k, height, width, 3)` uint8 RGB, one per kept position.
        kept: `(k,)` int64 positions the images came from, in the order asked for.
        skipped: `(name, reason)` of each position left out, in the order asked for.
        skipped_indices: `(len(skipped),)` int64 positions left out.
    """

    images: np.ndarray
    kept: np.ndarray
    skipped: tuple[tuple[str, str], ...]
    skipped_indices: np.ndarray


def decode_images(decode, indices, names, image_size, on_bad_image="skip", log=True):
    """Decodes the images at `indices`, leaving out (or stopping at) those that cannot be decoded.

    The one decode-and-skip loop of extraction, prediction and fine-tuning.

    Args:
        decode: `decode(index, (height, width)) -> (height, width, 3)` uint8, raising `DatasetError`
            for an image that cannot be decoded (e.g. `Split.image`, or `load_image_file` of a path).
        indices: `(n,)` integer positions to decode, in order.
        names: what each position is called in `skipped` and in the log (ids or paths), indexable
            by position.
        image_size: `(height, width)` of the decoded images.
        on_bad_image: "skip" leaves an image that cannot be decoded out (logged as `Skipped <name>:
            <reason>` when `log`); "fail" raises its `DatasetError`.
        log: whether to log each image left out.

    Returns:
        A `DecodedImages` of the `k <= n` images that could be decoded.

    Raises:
        DatasetError: an image cannot be decoded and `on_bad_image` is "fail", or a bad option.
    """
    checks.check_choice(on_bad_image, "on_bad_image", ("skip", "fail"), error=DatasetError)
    size = _check_image_size(image_size)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    batch = np.empty((len(indices), *size, 3), dtype=np.uint8)
    kept, skipped, skipped_indices = [], [], []
    for index in indices.tolist():
        try:
            batch[len(kept)] = decode(index, size)
        except DatasetError as error:
            if on_bad_image == "fail":
                raise
            skipped.append((names[index], str(error)))
            skipped_indices.append(index)
            if log:
                _LOGGER.warning("Skipped %s: %s", names[index], error)
            continue
        kept.append(index)
    return DecodedImages(
        images=batch if not skipped else batch[:len(kept)],
        kept=indices if not skipped else np.asarray(kept, dtype=np.int64),
        skipped=tuple(skipped),
        skipped_indices=np.asarray(skipped_indices, dtype=np.int64),
    )


# --------------------------------------------------------------------------------------------------
# folder


def _is_visible(name):
    return not name.startswith(".")


def _unreadable(error):
    return DatasetError(
        f"Expected a readable dataset folder. Received: '{error.filename}' cannot be read "
        f"({error.strerror}). Fix its permissions (e.g. chmod -R u+rX) or remove it."
    )


def _visible_subfolders(path):
    try:
        names = os.listdir(path)
    except PermissionError as error:
        raise _unreadable(error) from None
    return sorted(name for name in names if _is_visible(name) and os.path.isdir(os.path.join(path, name)))


def image_files(folder):
    """Image files under `folder` (recursively, hidden entries skipped), sorted.

    Raises:
        DatasetError: a folder cannot be read (os.walk would skip it silently).
    """

    def fail(error):
        raise _unreadable(error)

    found = []
    for directory, subdirectories, files in os.walk(folder, onerror=fail):
        subdirectories[:] = sorted(name for name in subdirectories if _is_visible(name))
        for name in sorted(files):
            if _is_visible(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(directory, name))
    return found


def _load_folder(root):
    """Loads a class-folder dataset: `<root>/<class>/...` or `<root>/train/<class>/...` + `<root>/val/...`."""
    if not os.path.isdir(root):
        raise DatasetError(
            f"Expected a folder of class sub-folders for --dataset_format=folder. Received: '{root}', "
            f"which is a file. Pass the folder, or choose another --dataset_format."
        )
    folders = _visible_subfolders(root)
    train_names = [name for name in folders if name.lower() in TRAIN_FOLDERS]
    validation_names = sorted((name for name in folders if name.lower() in VALIDATION_FOLDERS),
                              key=lambda name: VALIDATION_FOLDERS.index(name.lower()))
    if not train_names and not validation_names:
        return {"train": _folder_split(root, root, "train")}
    _check_split_folders(root, folders, train_names, validation_names)
    train_name = train_names[0]
    splits = {"train": _folder_split(root, os.path.join(root, train_name), "train")}
    if validation_names:
        name = validation_names[0]
        validation = _folder_split(root, os.path.join(root, name), "validation")
        _check_folder_classes(splits["train"], validation, name, train_name)
        splits["validation"] = validation
    return splits


def _check_split_folders(root, folders, train_names, validation_names):
    """Refuses a split layout that would be misread: no or two training folders, or other folders.

    Args:
        root: the dataset folder.
        folders: its visible sub-folders.
        train_names: those named like a training split (`TRAIN_FOLDERS`).
        validation_names: those named like a validation split (`VALIDATION_FOLDERS`).
    """
    splits = [f"{name}/" for name in train_names + validation_names]
    if not train_names:
        raise DatasetError(
            f"Expected a train/ (or training/) folder beside {', '.join(splits)} in '{_shown(root)}'. "
            f"Received: the folders {', '.join(f'{name}/' for name in folders)}. Rename the training split's "
            f"folder to train/; or, if these folders are classes, rename {', '.join(splits)} (split names: "
            f"{', '.join(TRAIN_FOLDERS + VALIDATION_FOLDERS)})."
        )
    if len(train_names) > 1:
        raise DatasetError(
            f"Expected one training folder in '{_shown(root)}'. Received: {', '.join(splits[:len(train_names)])}. "
            f"Merge them into train/, or move one out of the dataset folder."
        )
    others = [f"{name}/" for name in folders if name not in train_names + validation_names]
    if others:
        raise DatasetError(
            f"Expected only split folders beside {', '.join(splits)} in '{_shown(root)}' (train/ or training/, "
            f"and val/, validation/ or test/). Received also: {', '.join(others[:_MAX_SHOWN])}"
            f"{' ...' if len(others) > _MAX_SHOWN else ''}, which would be read as neither. Move "
            f"{'them' if len(others) > 1 else 'it'} out of the dataset folder, or, for a class, into every "
            f"split folder."
        )


def _folder_split(root, folder, name):
    class_names = _visible_subfolders(folder)
    if not class_names:
        raise DatasetError(
            f"Expected '{folder}' to hold one sub-folder of images per class. Received: no sub-folders. "
            f"Put the images in <class>/ folders, e.g. {os.path.join(folder, 'cat', 'cat_0.jpg')}."
        )
    files_per_class = [image_files(os.path.join(folder, class_name)) for class_name in class_names]
    if not any(files_per_class):
        raise DatasetError(
            f"Expected image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of '{folder}'. "
            f"Received: none in {len(class_names)} folders ({', '.join(class_names[:5])}"
            f"{', ...' if len(class_names) > 5 else ''}). Check the path and the file extensions."
        )
    empty = [class_name for class_name, files in zip(class_names, files_per_class) if not files]
    if empty:
        raise DatasetError(
            f"Expected at least one image in every class folder of '{folder}'. Received: no images in "
            f"{', '.join(repr(class_name) for class_name in empty)}. Add images or remove the empty folder."
        )
    paths, labels = [], []
    for label, files in enumerate(files_per_class):
        paths.extend(files)
        labels.extend([label] * len(files))
    return Split(
        name=name,
        class_names=tuple(class_names),
        labels=np.asarray(labels, dtype=np.int64),
        ids=tuple(os.path.relpath(p, root).replace(os.sep, "/") for p in paths),
        paths=tuple(os.path.abspath(p) for p in paths),
    )


def _check_folder_classes(train, validation, folder_name, train_name="train"):
    if train.class_names == validation.class_names:
        return
    only_train = sorted(set(train.class_names) - set(validation.class_names))
    only_validation = sorted(set(validation.class_names) - set(train.class_names))
    raise DatasetError(
        f"Expected {train_name}/ and {folder_name}/ to hold the same class folders. Received: only in "
        f"{train_name}/: {only_train or 'none'}; only in {folder_name}/: {only_validation or 'none'}. "
        f"Add or remove class folders so that both splits match."
    )


# --------------------------------------------------------------------------------------------------
# cifar10


def _cifar_folder(path):
    """The folder holding the CIFAR-10 batches (`path` or `path/cifar-10-batches-py`), or None."""
    if not os.path.isdir(path):
        return None
    for folder in (path, os.path.join(path, CIFAR10_SUBFOLDER)):
        if os.path.isdir(folder) and any(
            re.fullmatch(r"data_batch_\d+|test_batch", name) for name in os.listdir(folder)
        ):
            return folder
    return None


def _load_cifar10(path, allow_pickle=False):
    folder = _cifar_folder(path)
    if folder is None:
        raise DatasetError(
            f"Expected a folder holding the CIFAR-10 python batches (data_batch_1..5, test_batch) at '{path}' "
            f"or in its {CIFAR10_SUBFOLDER}/ sub-folder. Received: none found. Check the path or --dataset_format."
        )
    # The published batches hold only dicts, lists and NumPy arrays: they are read with an
    # unpickler that refuses anything else (and so runs no code) unless allow_pickle is given.
    names = os.listdir(folder)
    train_files = sorted(
        (name for name in names if re.fullmatch(r"data_batch_\d+", name)), key=lambda name: int(name.split("_")[-1])
    )
    class_names = CIFAR10_CLASS_NAMES
    if "batches.meta" in names:
        meta_path = os.path.join(folder, "batches.meta")
        meta = _unpickle(meta_path, encoding="bytes", allow_pickle=allow_pickle)
        class_names = tuple(
            name.decode("utf-8") if isinstance(name, bytes) else str(name)
            for name in _get(meta, "label_names", meta_path)
        )
    splits = {}
    if train_files:
        splits["train"] = _cifar_split("train", folder, train_files, class_names, allow_pickle)
    if "test_batch" in names:
        splits["validation" if train_files else "train"] = _cifar_split(
            "validation" if train_files else "train", folder, ["test_batch"], class_names, allow_pickle
        )
    return splits


def _cifar_split(name, folder, files, class_names, allow_pickle):
    images, labels, ids = [], [], []
    for file_name in files:
        path = os.path.join(folder, file_name)
        batch = _unpickle(path, encoding="bytes", allow_pickle=allow_pickle)
        data = np.asarray(_get(batch, "data", path))
        batch_labels = _as_labels(_get(batch, "labels", path), path)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
            raise DatasetError(
                f"Expected the data in '{path}' to be uint8 of shape (num_samples, 3072) (3x32x32, channels "
                f"first). Received: dtype {data.dtype}, shape {data.shape}."
            )
        _check_counts(data, batch_labels, f"'{path}'")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
        ids.extend(f"{file_name}#{index}" for index in range(len(batch_labels)))
    return Split(
        name=name,
        class_names=class_names,
        labels=np.concatenate(labels),
        ids=tuple(ids),
        images=np.ascontiguousarray(np.concatenate(images)),
    )


# --------------------------------------------------------------------------------------------------
# mnist


def _mnist_files(path):
    """`{prefix: {"images": path, "labels": path}}` for the IDX files in folder `path` (may be partial)."""
    if not os.path.isdir(path):
        return {}
    found = {}
    for name in sorted(os.listdir(path)):
        match = _MNIST_PATTERN.match(name)
        if match and (match["kind"] == "images") == (match["ndim"] == "3"):
            found.setdefault(match["prefix"], {}).setdefault(match["kind"], os.path.join(path, name))
    return found


def _read_idx(path, magic):
    """Reads an IDX file (gzip or raw) whose magic number must be `magic`; returns a uint8 array."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"Expected '{path}' to be a readable IDX file. Received: {error}.") from error
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    received = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if received != magic:
        raise DatasetError(
            f"Expected '{path}' to start with the IDX magic number 0x{magic:08X}. Received: "
            f"{'a file of ' + str(len(data)) + ' bytes' if received is None else f'0x{received:08X}'}. "
            f"Check that images and labels files are not swapped or corrupt."
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header_size + int(np.prod(shape)):
        raise DatasetError(
            f"Expected '{path}' to hold {header_size + int(np.prod(shape))} bytes for shape {shape}. "
            f"Received: {len(data)} bytes. The file is truncated or corrupt."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _load_mnist(path):
    pairs = _mnist_files(path)
    if not pairs:
        raise DatasetError(
            f"Expected MNIST IDX files (*-images-idx3-ubyte[.gz] and *-labels-idx1-ubyte[.gz]) in '{path}'. "
            f"Received: none found. Check the path or --dataset_format."
        )
    for prefix, pair in pairs.items():
        if len(pair) != 2:
            missing = "labels-idx1-ubyte" if "images" in pair else "images-idx3-ubyte"
            raise DatasetError(
                f"Expected both an images and a labels IDX file for '{prefix}' in '{path}'. Received: only "
                f"{os.path.basename(next(iter(pair.values())))}. Add {prefix}-{missing}[.gz]."
            )
    if len(pairs) == 1:
        roles = {"train": next(iter(pairs))}
    else:
        train = [p for p in _MNIST_TRAIN_PREFIXES if p in pairs]
        validation = [p for p in _MNIST_VALIDATION_PREFIXES if p in pairs]
        if not train or not validation or len(pairs) > 2:
            raise DatasetError(
                f"Expected one IDX pair, or a train-* pair and a t10k-* (or test-*) pair, in '{path}'. "
                f"Received pairs: {sorted(pairs)}. Keep only the train and test files in the folder."
            )
        roles = {"train": train[0], "validation": validation[0]}
    class_names = tuple(str(digit) for digit in range(10))
    splits = {}
    for name, prefix in roles.items():
        images = _read_idx(pairs[prefix]["images"], _IDX_IMAGES_MAGIC)
        labels = _read_idx(pairs[prefix]["labels"], _IDX_LABELS_MAGIC).astype(np.int64)
        _check_counts(images, labels, f"'{pairs[prefix]['images']}' and '{pairs[prefix]['labels']}'")
        splits[name] = _array_split(name, images, labels, class_names, os.path.basename(pairs[prefix]["images"]))
    return splits


# --------------------------------------------------------------------------------------------------
# gtsrb


def _gtsrb_folder(path):
    """The folder holding Final_Training/ or Final_Test/ (`path` or `path/GTSRB`), or None."""
    if not os.path.isdir(path):
        return None
    for folder in (path, os.path.join(path, GTSRB_SUBFOLDER)):
        if os.path.isdir(os.path.join(folder, "Final_Training", "Images")) or os.path.isdir(
            os.path.join(folder, "Final_Test")
        ):
            return folder
    return None


def _read_gtsrb_csv(csv_path):
    """Returns the rows of a GTSRB annotation CSV as dicts (`;`-separated, with a header)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f, delimiter=";"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"Expected '{csv_path}' to be a readable CSV file. Received: {error}.") from error


def _gtsrb_rows(csv_path, image_folder):
    """`[(image path, class id)]` from a GTSRB CSV with Filename and ClassId columns."""
    rows = _read_gtsrb_csv(csv_path)
    columns = set(rows[0]) if rows else set()
    if not {"Filename", "ClassId"} <= columns:
        raise DatasetError(
            f"Expected '{csv_path}' to be ';'-separated with Filename and ClassId columns. "
            f"Received columns: {sorted(c for c in columns if c) or 'none'}."
        )
    result = []
    for row in rows:
        image_path = os.path.join(image_folder, row["Filename"])
        if not os.path.isfile(image_path):
            raise DatasetError(
                f"Expected the image '{row['Filename']}' listed in '{csv_path}' at '{image_path}'. "
                f"Received: no such file. Restore the image or remove its row."
            )
        try:
            class_id = int(row["ClassId"])
        except (TypeError, ValueError):
            class_id = -1
        if class_id < 0:
            raise DatasetError(
                f"Expected the ClassId of '{row['Filename']}' in '{csv_path}' to be an integer >= 0. "
                f"Received: {row['ClassId']!r}."
            )
        result.append((image_path, class_id))
    return result


def _gtsrb_test_csv(test_folder):
    """The first CSV with a ClassId column in Final_Test/ or Final_Test/Images/, or None."""
    candidates = [os.path.join(test_folder, "GT-final_test.csv")]
    for folder in (test_folder, os.path.join(test_folder, "Images")):
        if os.path.isdir(folder):
            candidates.extend(
                os.path.join(folder, name) for name in sorted(os.listdir(folder)) if re.fullmatch(r"GT-.*\.csv", name)
            )
    for candidate in candidates:
        if os.path.isfile(candidate):
            rows = _read_gtsrb_csv(candidate)
            if rows and "ClassId" in rows[0]:
                return candidate
    return None


def _load_gtsrb(path):
    folder = _gtsrb_folder(path)
    if folder is None:
        raise DatasetError(
            f"Expected the GTSRB layout (Final_Training/Images/000NN/ and/or Final_Test/) in '{path}'. "
            f"Received: neither found. Check the path or --dataset_format."
        )
    training_folder = os.path.join(folder, "Final_Training", "Images")
    parts = {}
    if os.path.isdir(training_folder):
        rows = []
        for class_folder in _visible_subfolders(training_folder):
            class_path = os.path.join(training_folder, class_folder)
            csv_path = os.path.join(class_path, f"GT-{class_folder}.csv")
            if not os.path.isfile(csv_path):
                raise DatasetError(
                    f"Expected the annotation file '{csv_path}' for GTSRB class folder '{class_folder}'. "
                    f"Received: no such file. Restore it, or use --dataset_format=folder to label by folder."
                )
            rows.extend(_gtsrb_rows(csv_path, class_path))
        if rows:
            parts["train"] = rows
    test_folder = os.path.join(folder, "Final_Test")
    test_csv = _gtsrb_test_csv(test_folder) if os.path.isdir(test_folder) else None
    if test_csv is not None:
        parts["validation" if parts else "train"] = _gtsrb_rows(test_csv, os.path.join(test_folder, "Images"))
    if not parts:
        raise DatasetError(
            f"Expected labelled GTSRB images in '{folder}': Final_Training/Images/000NN/ with GT-000NN.csv, or "
            f"Final_Test/ with a GT-*.csv that has a ClassId column. Received: neither. Add the annotation files."
        )
    top = max(class_id for rows in parts.values() for _, class_id in rows)
    if os.path.isdir(training_folder):
        top = max([top] + [int(name) for name in _visible_subfolders(training_folder) if name.isdigit()])
    class_names = tuple(f"{class_id:05d}" for class_id in range(top + 1))
    return {
        name: Split(
            name=name,
            class_names=class_names,
            labels=np.asarray([class_id for _, class_id in rows], dtype=np.int64),
            ids=tuple(os.path.relpath(p, path).replace(os.sep, "/") for p, _ in rows),
            paths=tuple(os.path.abspath(p) for p, _ in rows),
        )
        for name, rows in parts.items()
    }


# --------------------------------------------------------------------------------------------------
# npz


def _load_npz(path):
    if not os.path.isfile(path):
        raise DatasetError(
            f"Expected a .npz file for --dataset_format=npz. Received: '{path}', which is a folder. "
            f"Pass the file itself, or choose another --dataset_format."
        )
    arrays = _read_npz(path)
    keys = set(arrays)
    if {"x", "y"} <= keys:
        names = {"train": ("x", "y", "")}
    elif {"x_train", "y_train"} <= keys:
        names = {"train": ("x_train", "y_train", ":x_train")}
        if {"x_test", "y_test"} <= keys:
            names["validation"] = ("x_test", "y_test", ":x_test")
    else:
        raise DatasetError(
            f"Expected '{path}' to hold arrays x and y, or x_train and y_train (plus optional x_test and "
            f"y_test). Received: {sorted(keys)}. Save it with np.savez(path, x=images, y=labels)."
        )
    class_names = arrays.get("class_names")
    arrays = {name: (arrays[x], arrays[y], suffix) for name, (x, y, suffix) in names.items()}
    base = os.path.basename(path)
    labels = {name: _as_labels(y, f"'{path}'") for name, (_, y, _) in arrays.items()}
    if class_names is None:
        class_names = _default_class_names(*labels.values())
    else:
        class_names = tuple(str(name) for name in np.asarray(class_names).reshape(-1))
    splits = {}
    for name, (x, _, suffix) in arrays.items():
        images = _as_uint8_images(x, f"'{path}'")
        _check_counts(images, labels[name], f"'{path}' ({name})")
        splits[name] = _array_split(name, images, labels[name], class_names, base + suffix)
    return splits


def _read_npz(path):
    """Reads every array of the .npz file at `path` with `np.load(allow_pickle=False)`.

    Returns:
        `{name: array}`.
    """
    try:
        with open(path, "rb") as f:  # Our own handle: np.load leaks its own on corrupt archives.
            magic = f.read(6)
            f.seek(0)
            if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
                raise DatasetError(
                    f"Expected '{path}' to be a .npz archive (a zip file written by np.savez). Received: a file "
                    f"starting with {magic!r}. npz files are never loaded with pickles; re-save the arrays with "
                    f"np.savez(path, x=images, y=labels)."
                )
            archive = np.load(f, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise DatasetError(
                    f"Expected '{path}' to be a .npz archive of named arrays. Received: a single .npy array of "
                    f"shape {getattr(archive, 'shape', '?')}. Save it with np.savez(path, x=images, y=labels)."
                )
            with archive:
                return {key: _npz_array(archive, key, path) for key in archive.files}
    except DatasetError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise DatasetError(f"Expected '{path}' to be a readable .npz file. Received: {error}.") from error


def _npz_array(archive, key, path):
    """Reads `archive[key]`; object arrays (which need pickles) raise DatasetError."""
    try:
        return archive[key]
    except ValueError as error:
        raise DatasetError(
            f"Expected '{key}' in '{path}' to be a plain array (no Python objects). Received: {error}. Save "
            f"strings as np.array(names, dtype=str); npz files are never loaded with pickles."
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetError(f"Expected '{key}' in '{path}' to be readable. Received: {error}.") from error


# --------------------------------------------------------------------------------------------------
# pickle (Udacity lab)


def _pickle_file_in(folder, stem):
    """`folder/<stem>.p` (or .pkl, .pickle) if it exists, else None."""
    if not os.path.isdir(folder):
        return None
    for extension in PICKLE_EXTENSIONS:
        candidate = os.path.join(folder, stem + extension)
        if os.path.isfile(candidate):
            return candidate
    return None


def _load_pickle(path, allow_pickle=False):
    if os.path.isdir(path):
        train_file = _pickle_file_in(path, "train")
        if train_file is None:
            raise DatasetError(
                f"Expected a folder holding train.p (plus valid.p or test.p) at '{path}'. Received: no train.p. "
                f"Pass the pickle file itself, or check the path."
            )
        files = {"train": train_file}
        validation_file = _pickle_file_in(path, "valid") or _pickle_file_in(path, "test")
        if validation_file is not None:
            files["validation"] = validation_file
    else:
        files = {"train": path}
    _require_pickle(allow_pickle, path)
    arrays = {}
    for name, file_path in files.items():
        data = _unpickle(file_path, encoding="latin1")
        labels = _as_labels(_get(data, "labels", file_path), f"'{file_path}'")
        images = _as_uint8_images(_get(data, "features", file_path), f"'{file_path}'")
        _check_counts(images, labels, f"'{file_path}'")
        arrays[name] = (images, labels, os.path.basename(file_path))
    class_names = _default_class_names(*(labels for _, labels, _ in arrays.values()))
    return {
        name: _array_split(name, images, labels, class_names, source)
        for name, (images, labels, source) in arrays.items()
    }


# --------------------------------------------------------------------------------------------------
# digits


def _load_digits():
    """scikit-learn's 1797 8x8 digits as a "train" split, pixels scaled from 0..16 to 0..255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return _array_split("train", images, digits.target.astype(np.int64), tuple(str(d) for d in range(10)), "digits")
