"""Shared fixtures: tiny synthetic datasets written to `tmp_path`."""

import os

import numpy as np
import pytest
from PIL import Image

# Quiet TensorFlow's start-up chatter in test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_folder_dataset(root, class_names=("cat", "dog", "fish"), per_class=4, size=(20, 24), seed=0):
    """Writes a class-folder dataset of random RGB JPEG and PNG images.

    Args:
        root: folder to create; images go to `root/<class>/<class>_<i>.<ext>`.
        class_names: one sub-folder per class.
        per_class: images per class.
        size: `(height, width)` of every image.
        seed: seed for the pixel values.

    Returns:
        `root`, as a string.
    """
    rng = np.random.default_rng(seed)
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            # A class-dependent mean colour makes the classes learnable.
            pixels = rng.integers(0, 60, size=(*size, 3)) + 60 * label
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(folder, f"{name}_{i}.{ext}"))
    return str(root)


@pytest.fixture
def folder_dataset(tmp_path):
    """A `train/` + `val/` class-folder dataset with 3 classes, 4 + 2 images per class."""
    root = tmp_path / "shapes"
    write_folder_dataset(root / "train", per_class=4, seed=1)
    write_folder_dataset(root / "val", per_class=2, seed=2)
    return str(root)


@pytest.fixture(autouse=True, scope="session")
def _engine_cache_home(tmp_path_factory):
    """Keeps converted models (features.engines) out of the user's ~/.cache."""
    previous = os.environ.get("BOTTLENECK_CACHE_HOME")
    os.environ["BOTTLENECK_CACHE_HOME"] = str(tmp_path_factory.mktemp("bottleneck-cache-home"))
    yield
    if previous is None:
        os.environ.pop("BOTTLENECK_CACHE_HOME", None)
    else:
        os.environ["BOTTLENECK_CACHE_HOME"] = previous
