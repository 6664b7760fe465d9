"""The format registry: every dataset format, one entry each, and the detection and loading over them.

Each format is one module of this package with `NAME`, `LAYOUT` (one line for the message when no
format is detected), `detect(path) -> bool` and `load(path[, allow_pickle]) -> {name: Split}`. A new
format is that module plus one `_format(...)` line in `_registry()`.
"""

import dataclasses
import os
from typing import Callable

from bottleneck_cache.pipeline.datasets import cifar10
from bottleneck_cache.pipeline.datasets import digits
from bottleneck_cache.pipeline.datasets import errors
from bottleneck_cache.pipeline.datasets import folder
from bottleneck_cache.pipeline.datasets import gtsrb
from bottleneck_cache.pipeline.datasets import mnist
from bottleneck_cache.pipeline.datasets import npz
from bottleneck_cache.pipeline.datasets import pickles


@dataclasses.dataclass(frozen=True)
class DatasetFormat:
    """What the registry knows of one dataset format.

    Attributes:
        name: the `--dataset_format` value, e.g. "cifar10".
        detect: `detect(path) -> bool`, whether the existing file or folder at `path` has this layout.
        load: `load(path) -> {"train": Split[, "validation": Split]}` (with `allow_pickle=` when
            `pickled`).
        layout: one line saying what the layout looks like, for the message when no format is
            detected; "" for a format that needs no files.
        pickled: whether loading unpickles, and so takes `allow_pickle`.
        detect_last: tried only after every other format, since other layouts also match it.
    """

    name: str
    detect: Callable[[str], bool]
    load: Callable[..., dict]
    layout: str
    pickled: bool = False
    detect_last: bool = False


def _format(module, pickled=False, detect_last=False):
    return DatasetFormat(module.NAME, module.detect, module.load, module.LAYOUT, pickled, detect_last)


def _registry():
    return (
        _format(folder, detect_last=True),
        _format(cifar10, pickled=True),
        _format(mnist),
        _format(gtsrb),
        _format(npz),
        _format(pickles, pickled=True),
        _format(digits),
    )


REGISTRY = _registry()
FORMATS = tuple(entry.name for entry in REGISTRY)
_BY_NAME = {entry.name: entry for entry in REGISTRY}
_DETECTION_ORDER = tuple(sorted(REGISTRY, key=lambda entry: entry.detect_last))
_LAYOUTS = tuple(entry.layout for entry in REGISTRY if entry.layout)


def detect_format(path):
    """Guesses the format of the dataset at `path` from its file name or folder layout.

    Args:
        path: a dataset file or folder.

    Returns:
        One of `FORMATS` other than "digits".

    Raises:
        DatasetError: `path` does not exist or matches no known layout.
    """
    errors.check_exists(path)
    for entry in _DETECTION_ORDER:
        if entry.detect(path):
            return entry.name
    if os.path.isfile(path):
        extension = os.path.splitext(path)[1].lower()
        raise errors.DatasetError(_unknown_layout_message(path, f"a file with extension '{extension}'"))
    entries = sorted(name for name in os.listdir(path) if not name.startswith("."))
    shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
    received = f"a folder containing [{shown}]" if entries else "an empty folder"
    raise errors.DatasetError(_unknown_layout_message(path, received))


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
            raise errors.DatasetError(
                f"Expected --dataset_format to be one of {', '.join(FORMATS)}. "
                f"Received: '{dataset_format}'. Pick one of those, or omit it to detect the format."
            )
    if path is None or dataset_format == digits.NAME:
        if path is None and dataset_format not in (None, digits.NAME):
            raise errors.DatasetError(
                f"Expected a dataset path for --dataset_format={dataset_format}. Received: no path. "
                f"Pass the dataset location, or use --dataset_format=digits for the bundled digits."
            )
        return digits.load()
    path = os.fspath(path)
    errors.check_exists(path)
    entry = _BY_NAME[dataset_format or detect_format(path)]
    splits = entry.load(path, allow_pickle=allow_pickle) if entry.pickled else entry.load(path)
    for split in splits.values():
        _check_text_names(split, path)
    return splits


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
    shown = ", ".join(f"'{errors.shown(name)}'" for name in bad[:errors.MAX_SHOWN])
    more = f" and {len(bad) - errors.MAX_SHOWN} more" if len(bad) > errors.MAX_SHOWN else ""
    raise errors.DatasetError(
        f"Expected file and folder names in UTF-8 (the cache stores them as text). Received: "
        f"{len(bad)} name{'s' * (len(bad) != 1)} in '{errors.shown(path)}' that {'are' if len(bad) != 1 else 'is'} "
        f"not: {shown}{more}. Rename {'them' if len(bad) != 1 else 'it'} to UTF-8 (e.g. convmv -r -f "
        f"latin1 -t utf-8 --notest '{errors.shown(path)}'), then run again."
    )


def _unknown_layout_message(path, received):
    layouts = "\n".join(f"  - {layout}" for layout in _LAYOUTS)
    return (
        f"Could not detect the format of the dataset at '{path}'. Expected one of these layouts:\n{layouts}\n"
        f"Received: {received}. Pass --dataset_format (one of {', '.join(FORMATS)}) to choose the format."
    )
