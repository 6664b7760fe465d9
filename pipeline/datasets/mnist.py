"""`mnist`: IDX files, gzipped or not (`train-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte`, ...)."""

import gzip
import os
import re

import numpy as np

from bottleneck_cache.pipeline.datasets import convert
from bottleneck_cache.pipeline.datasets import errors

NAME = "mnist"
LAYOUT = "mnist: *-images-idx3-ubyte[.gz] with *-labels-idx1-ubyte[.gz]"
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_MNIST_PATTERN = re.compile(r"^(?P<prefix>.+)-(?P<kind>images|labels)[.-]idx(?P<ndim>[13])-ubyte(?P<gz>\.gz)?$")
_MNIST_TRAIN_PREFIXES = ("train",)
_MNIST_VALIDATION_PREFIXES = ("t10k", "test")


def detect(path):
    """Whether folder `path` holds an IDX images or labels file."""
    return bool(_mnist_files(path))


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
        raise errors.DatasetError(f"Expected '{path}' to be a readable IDX file. Received: {error}.") from error
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    received = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if received != magic:
        raise errors.DatasetError(
            f"Expected '{path}' to start with the IDX magic number 0x{magic:08X}. Received: "
            f"{'a file of ' + str(len(data)) + ' bytes' if received is None else f'0x{received:08X}'}. "
            f"Check that images and labels files are not swapped or corrupt."
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header_size + int(np.prod(shape)):
        raise errors.DatasetError(
            f"Expected '{path}' to hold {header_size + int(np.prod(shape))} bytes for shape {shape}. "
            f"Received: {len(data)} bytes. The file is truncated or corrupt."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def load(path):
    """Loads the MNIST IDX files in folder `path`.

    Args:
        path: a folder holding one images/labels IDX pair, or a train-* and a t10k-* (or test-*) pair.

    Returns:
        `{"train": Split}`, plus `"validation"` from the t10k-* pair; `(n, 28, 28)` uint8 images
        (or the files' own size) with ids "<images file>#<index>", class names "0".."9".

    Raises:
        DatasetError: no IDX files, an unpaired file, other pairs, or a corrupt file.
    """
    pairs = _mnist_files(path)
    if not pairs:
        raise errors.DatasetError(
            f"Expected MNIST IDX files (*-images-idx3-ubyte[.gz] and *-labels-idx1-ubyte[.gz]) in '{path}'. "
            f"Received: none found. Check the path or --dataset_format."
        )
    for prefix, pair in pairs.items():
        if len(pair) != 2:
            missing = "labels-idx1-ubyte" if "images" in pair else "images-idx3-ubyte"
            raise errors.DatasetError(
                f"Expected both an images and a labels IDX file for '{prefix}' in '{path}'. Received: only "
                f"{os.path.basename(next(iter(pair.values())))}. Add {prefix}-{missing}[.gz]."
            )
    if len(pairs) == 1:
        roles = {"train": next(iter(pairs))}
    else:
        train = [p for p in _MNIST_TRAIN_PREFIXES if p in pairs]
        validation = [p for p in _MNIST_VALIDATION_PREFIXES if p in pairs]
        if not train or not validation or len(pairs) > 2:
            raise errors.DatasetError(
                f"Expected one IDX pair, or a train-* pair and a t10k-* (or test-*) pair, in '{path}'. "
                f"Received pairs: {sorted(pairs)}. Keep only the train and test files in the folder."
            )
        roles = {"train": train[0], "validation": validation[0]}
    class_names = tuple(str(digit) for digit in range(10))
    splits = {}
    for name, prefix in roles.items():
        images = _read_idx(pairs[prefix]["images"], _IDX_IMAGES_MAGIC)
        labels = _read_idx(pairs[prefix]["labels"], _IDX_LABELS_MAGIC).astype(np.int64)
        convert.check_counts(images, labels, f"'{pairs[prefix]['images']}' and '{pairs[prefix]['labels']}'")
        splits[name] = convert.array_split(name, images, labels, class_names, os.path.basename(pairs[prefix]["images"]))
    return splits
