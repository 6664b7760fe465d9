"""`npz`: a NumPy archive with `x`, `y`, or Keras-style `x_train`, `y_train`, `x_test`, `y_test`.

Read with `np.load(allow_pickle=False)`: an object array is refused, never unpickled. An optional
`class_names` array names the classes.
"""

import os
import zipfile

import numpy as np

from bottleneck_cache.pipeline.datasets import convert
from bottleneck_cache.pipeline.datasets import errors

NAME = "npz"
LAYOUT = "npz: a .npz file"


def detect(path):
    """Whether `path` is a file named *.npz."""
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() == ".npz"


def load(path):
    """Loads the arrays of the .npz file at `path`.

    Args:
        path: a .npz file holding x and y, or x_train and y_train (plus optional x_test and y_test).

    Returns:
        `{"train": Split}`, plus `"validation"` from x_test and y_test; uint8 images with ids
        "<file>#<index>" (or "<file>:x_train#<index>"), class names from `class_names` if present.

    Raises:
        DatasetError: `path` is a folder, not an archive, or holds missing or invalid arrays.
    """
    if not os.path.isfile(path):
        raise errors.DatasetError(
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
        raise errors.DatasetError(
            f"Expected '{path}' to hold arrays x and y, or x_train and y_train (plus optional x_test and "
            f"y_test). Received: {sorted(keys)}. Save it with np.savez(path, x=images, y=labels)."
        )
    class_names = arrays.get("class_names")
    arrays = {name: (arrays[x], arrays[y], suffix) for name, (x, y, suffix) in names.items()}
    base = os.path.basename(path)
    labels = {name: convert.as_labels(y, f"'{path}'") for name, (_, y, _) in arrays.items()}
    if class_names is None:
        class_names = convert.default_class_names(*labels.values())
    else:
        class_names = tuple(str(name) for name in np.asarray(class_names).reshape(-1))
    splits = {}
    for name, (x, _, suffix) in arrays.items():
        images = convert.as_uint8_images(x, f"'{path}'")
        convert.check_counts(images, labels[name], f"'{path}' ({name})")
        splits[name] = convert.array_split(name, images, labels[name], class_names, base + suffix)
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
                raise errors.DatasetError(
                    f"Expected '{path}' to be a .npz archive (a zip file written by np.savez). Received: a file "
                    f"starting with {magic!r}. npz files are never loaded with pickles; re-save the arrays with "
                    f"np.savez(path, x=images, y=labels)."
                )
            archive = np.load(f, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise errors.DatasetError(
                    f"Expected '{path}' to be a .npz archive of named arrays. Received: a single .npy array of "
                    f"shape {getattr(archive, 'shape', '?')}. Save it with np.savez(path, x=images, y=labels)."
                )
            with archive:
                return {key: _npz_array(archive, key, path) for key in archive.files}
    except errors.DatasetError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise errors.DatasetError(f"Expected '{path}' to be a readable .npz file. Received: {error}.") from error


def _npz_array(archive, key, path):
    """Reads `archive[key]`; object arrays (which need pickles) raise DatasetError."""
    try:
        return archive[key]
    except ValueError as error:
        raise errors.DatasetError(
            f"Expected '{key}' in '{path}' to be a plain array (no Python objects). Received: {error}. Save "
            f"strings as np.array(names, dtype=str); npz files are never loaded with pickles."
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise errors.DatasetError(f"Expected '{key}' in '{path}' to be readable. Received: {error}.") from error
