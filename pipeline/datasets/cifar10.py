"""`cifar10`: the CIFAR-10 python batches (`data_batch_1`..`5`, `test_batch`, `batches.meta`).

The batches are pickles of plain data; they are read with the data-only unpickler, or with the plain
one when `allow_pickle` is given.
"""

import os
import re

import numpy as np

from bottleneck_cache.pipeline.datasets import convert
from bottleneck_cache.pipeline.datasets import core
from bottleneck_cache.pipeline.datasets import errors
from bottleneck_cache.pipeline.datasets import unpickler

NAME = "cifar10"
LAYOUT = "cifar10: data_batch_1..5 and/or test_batch (possibly inside cifar-10-batches-py/)"
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_SUBFOLDER = "cifar-10-batches-py"


def detect(path):
    """Whether `path` (or its cifar-10-batches-py/ sub-folder) holds a data_batch_N or test_batch."""
    return _cifar_folder(path) is not None


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


def load(path, allow_pickle=False):
    """Loads the CIFAR-10 python batches at `path` (or in its cifar-10-batches-py/ sub-folder).

    Args:
        path: the folder holding the batches.
        allow_pickle: read the batches with the plain unpickler (which can run code) instead of the
            data-only one.

    Returns:
        `{"train": Split}` from data_batch_N, plus `"validation"` from test_batch when both are there
        (test_batch alone is "train"); `(n, 32, 32, 3)` uint8 images with ids "<batch file>#<index>".

    Raises:
        DatasetError: no batches, or a batch that is not plain data of the published shape.
    """
    folder = _cifar_folder(path)
    if folder is None:
        raise errors.DatasetError(
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
        meta = unpickler.unpickle(meta_path, encoding="bytes", allow_pickle=allow_pickle)
        class_names = tuple(
            name.decode("utf-8") if isinstance(name, bytes) else str(name)
            for name in unpickler.pickled_item(meta, "label_names", meta_path)
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
        batch = unpickler.unpickle(path, encoding="bytes", allow_pickle=allow_pickle)
        data = np.asarray(unpickler.pickled_item(batch, "data", path))
        batch_labels = convert.as_labels(unpickler.pickled_item(batch, "labels", path), path)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
            raise errors.DatasetError(
                f"Expected the data in '{path}' to be uint8 of shape (num_samples, 3072) (3x32x32, channels "
                f"first). Received: dtype {data.dtype}, shape {data.shape}."
            )
        convert.check_counts(data, batch_labels, f"'{path}'")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
        ids.extend(f"{file_name}#{index}" for index in range(len(batch_labels)))
    return core.Split(
        name=name,
        class_names=class_names,
        labels=np.concatenate(labels),
        ids=tuple(ids),
        images=np.ascontiguousarray(np.concatenate(images)),
    )
