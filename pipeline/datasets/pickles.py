"""`pickle`: Udacity-lab pickles, dicts with `features` and `labels` (`train.p`, `valid.p`).

A file, or a folder holding `train.p` plus `valid.p` or `test.p`. Loaded only with `allow_pickle`
(unpickling runs code stored in the file).
"""

import os

from bottleneck_cache.pipeline.datasets import convert
from bottleneck_cache.pipeline.datasets import errors
from bottleneck_cache.pipeline.datasets import unpickler

NAME = "pickle"
LAYOUT = "pickle: a .p, .pkl or .pickle file, or a folder holding train.p plus valid.p or test.p"
PICKLE_EXTENSIONS = (".p", ".pkl", ".pickle")


def detect(path):
    """Whether `path` is a .p, .pkl or .pickle file, or a folder holding train.p (or .pkl, .pickle)."""
    if os.path.isfile(path):
        return os.path.splitext(path)[1].lower() in PICKLE_EXTENSIONS
    return _pickle_file_in(path, "train") is not None


def _pickle_file_in(folder, stem):
    """`folder/<stem>.p` (or .pkl, .pickle) if it exists, else None."""
    if not os.path.isdir(folder):
        return None
    for extension in PICKLE_EXTENSIONS:
        candidate = os.path.join(folder, stem + extension)
        if os.path.isfile(candidate):
            return candidate
    return None


def load(path, allow_pickle=False):
    """Loads Udacity-lab pickles: a file, or a folder holding train.p plus valid.p or test.p.

    Args:
        path: the pickle file or folder.
        allow_pickle: must be True: unpickling runs code stored in the file.

    Returns:
        `{"train": Split}`, plus `"validation"` from valid.p (or test.p); uint8 images with ids
        "<file>#<index>".

    Raises:
        DatasetError: `allow_pickle` is False, or a file is not a dict of features and labels.
    """
    if os.path.isdir(path):
        train_file = _pickle_file_in(path, "train")
        if train_file is None:
            raise errors.DatasetError(
                f"Expected a folder holding train.p (plus valid.p or test.p) at '{path}'. Received: no train.p. "
                f"Pass the pickle file itself, or check the path."
            )
        files = {"train": train_file}
        validation_file = _pickle_file_in(path, "valid") or _pickle_file_in(path, "test")
        if validation_file is not None:
            files["validation"] = validation_file
    else:
        files = {"train": path}
    unpickler.require_pickle(allow_pickle, path)
    arrays = {}
    for name, file_path in files.items():
        data = unpickler.unpickle(file_path, encoding="latin1")
        labels = convert.as_labels(unpickler.pickled_item(data, "labels", file_path), f"'{file_path}'")
        images = convert.as_uint8_images(unpickler.pickled_item(data, "features", file_path), f"'{file_path}'")
        convert.check_counts(images, labels, f"'{file_path}'")
        arrays[name] = (images, labels, os.path.basename(file_path))
    class_names = convert.default_class_names(*(labels for _, labels, _ in arrays.values()))
    return {
        name: convert.array_split(name, images, labels, class_names, source)
        for name, (images, labels, source) in arrays.items()
    }
