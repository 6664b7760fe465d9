"""`digits`: scikit-learn's bundled 8x8 digits; needs no files (loaded when no path is given)."""

import numpy as np

from bottleneck_cache.pipeline.datasets import convert

NAME = "digits"
LAYOUT = ""


def detect(path):
    """Whether `path` names the bundled digits: only None (no dataset path) does."""
    return path is None


def load(path=None):
    """Loads scikit-learn's 1797 8x8 digits, pixels scaled from 0..16 to 0..255.

    Args:
        path: ignored (the digits need no files).

    Returns:
        `{"train": Split}` of `(1797, 8, 8)` uint8 images with ids "digits#<index>".
    """
    del path  # The digits are bundled with scikit-learn.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    return {"train": convert.array_split("train", images, labels, tuple(str(d) for d in range(10)), "digits")}
