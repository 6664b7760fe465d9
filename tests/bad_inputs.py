"""Bad or unusual inputs of issue 10, shared by the tests and `benchmarks/fault_injection.py`.

Each `Case` builds one input under a folder (a tiny class-folder dataset with one thing wrong, or
an `.npz` file) and says what `extract_features` must do with it: refuse it with one message,
skip the bad image and list it, or work (possibly with a warning). `snapshot` and `destroyed`
tell whether a command changed or removed any file it was not asked to write.

Uses NumPy and Pillow only, so that the fault suite can import it without pytest.
"""

import dataclasses
import hashlib
import os
from typing import Callable

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog")
SIZE = 16  # side of every synthetic image


def write_images(folder, prefix, count, label=0, seed=0):
    """Writes `count` small JPEG/PNG images `<prefix>_<i>.{jpg,png}` into `folder` (created)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng([seed, label])
    for i in range(count):
        pixels = (rng.integers(0, 60, (SIZE, SIZE, 3)) + 60 * label).astype(np.uint8)
        extension = "png" if i % 2 else "jpg"
        Image.fromarray(pixels).save(os.path.join(folder, f"{prefix}_{i}.{extension}"))


def split_dataset(root, classes=CLASSES, train=3, val=2, train_folder="train", val_folder="val"):
    """`root/<train_folder>/<class>/` and `root/<val_folder>/<class>/` of ordinary images; returns root."""
    for label, name in enumerate(classes):
        write_images(os.path.join(root, train_folder, name), name, train, label, seed=1)
        if val_folder:
            write_images(os.path.join(root, val_folder, name), name, val, label, seed=2)
    return str(root)


# --------------------------------------------------------------------------------------------------
# The inputs. Each builder takes a parent folder and returns the dataset path it made there.


def dangling_symlink(parent):
    """A link to a missing file among the images: `train/cat/gone.jpg`."""
    root = split_dataset(os.path.join(parent, "dangling"))
    os.symlink(os.path.join(parent, "no_such_picture.jpg"), os.path.join(root, "train", "cat", "gone.jpg"))
    return root


def symlink_loop(parent):
    """A link to itself among the images: `train/cat/loop.jpg`."""
    root = split_dataset(os.path.join(parent, "loop"))
    os.symlink("loop.jpg", os.path.join(root, "train", "cat", "loop.jpg"))
    return root


def non_utf8_file(parent):
    """An image whose file name is Latin-1, not UTF-8: `train/cat/caf\\xe9.jpg`."""
    root = split_dataset(os.path.join(parent, "latin1_file"))
    os.rename(os.path.join(root, "train", "cat", "cat_0.jpg"),
              os.path.join(os.fsencode(root), b"train", b"cat", b"caf\xe9.jpg"))
    return root


def non_utf8_class(parent):
    """A class folder whose name is Latin-1: `train/caf\\xe9/` and `val/caf\\xe9/`."""
    root = split_dataset(os.path.join(parent, "latin1_class"))
    for split in (b"train", b"val"):
        os.rename(os.path.join(os.fsencode(root), split, b"dog"), os.path.join(os.fsencode(root), split, b"caf\xe9"))
    return root


def bad_dataset_name(parent):
    """A dataset folder whose name is not a valid `--dataset` value: `my pets (2024)`."""
    return split_dataset(os.path.join(parent, "my pets (2024)"))


def one_class(parent):
    """Only one class folder, `cat`, in `train/` and `val/`."""
    return split_dataset(os.path.join(parent, "one_class"), classes=("cat",))


def lonely_class(parent):
    """Classes `cat`, `dog` with 4 images and `owl` with 1, no validation folder."""
    root = os.path.join(parent, "lonely")
    split_dataset(root, classes=CLASSES, train=4, val_folder=None)
    os.rename(os.path.join(root, "train"), os.path.join(root, "tmp"))
    for name in CLASSES:
        os.rename(os.path.join(root, "tmp", name), os.path.join(root, name))
    os.rmdir(os.path.join(root, "tmp"))
    write_images(os.path.join(root, "owl"), "owl", 1, label=2)
    return root


def training_validation(parent):
    """Split folders named `training/` and `validation/`."""
    return split_dataset(os.path.join(parent, "long_names"), train_folder="training", val_folder="validation")


def val_and_extra(parent):
    """`val/` beside `extra/`, no training folder (once read as two classes, val and extra)."""
    root = os.path.join(parent, "val_extra")
    split_dataset(root, train_folder="extra", val_folder="val")
    return root


def stray_folder(parent):
    """`train/` and `val/` plus a third folder `extra/` that is neither."""
    root = split_dataset(os.path.join(parent, "stray"))
    write_images(os.path.join(root, "extra", "cat"), "cat", 2)
    return root


def two_train_folders(parent):
    """Both `train/` and `training/`."""
    root = split_dataset(os.path.join(parent, "two_train"))
    write_images(os.path.join(root, "training", "cat"), "cat", 2)
    return root


def float_npz(parent, low=-10.0, high=300.0):
    """An `.npz` of float images with values from `low` to `high` (labels 0, 1, 0, 1, ...)."""
    path = os.path.join(parent, "floats.npz")
    os.makedirs(parent, exist_ok=True)
    x = np.linspace(low, high, 8 * SIZE * SIZE * 3, dtype=np.float32).reshape(8, SIZE, SIZE, 3)
    np.savez(path, x=x, y=np.arange(8) % 2)
    return path


def nan_npz(parent):
    """An `.npz` of float images in 0..1 with one NaN."""
    path = float_npz(parent, 0.0, 1.0)
    with np.load(path) as arrays:
        x, y = arrays["x"].copy(), arrays["y"]
    x[3, 2, 2, 1] = np.nan
    np.savez(path, x=x, y=y)
    return path


def ordinary(parent):
    """A plain `train/` + `val/` dataset with nothing wrong."""
    return split_dataset(os.path.join(parent, "ordinary"))


@dataclasses.dataclass(frozen=True)
class Case:
    """One input and what `extract_features` must do with it.

    Attributes:
        name: what the input is, e.g. "dangling symlink".
        build: `build(parent) -> dataset path`.
        outcome: "refused" (one error, nothing written), "skipped" (works; `skipped` listed in the
            cache), or "works" (every image kept; a warning when `match` is set).
        match: a regex the error, the skip reason or the warning must match.
        flags: extra `extract_features` flags, e.g. ("--on_bad_image=fail",).
        skipped: the id of the file the cache must list as skipped.
        class_names: the classes the train cache must have, when it is written.
    """

    name: str
    build: Callable
    outcome: str
    match: str = ""
    flags: tuple = ()
    skipped: str = ""
    class_names: tuple = ()


DANGLING = (r"gone\.jpg' to be a readable image\. Received: a symbolic link to '.*no_such_picture\.jpg', "
            r"which does not exist")
LOOP = r"loop\.jpg' to be a readable image\. Received: a symbolic link loop"

CASES = (
    Case("dangling symlink, skip", dangling_symlink, "skipped", DANGLING, skipped="train/cat/gone.jpg"),
    Case("dangling symlink, fail", dangling_symlink, "refused", DANGLING, ("--on_bad_image=fail",)),
    Case("symlink loop, skip", symlink_loop, "skipped", LOOP, skipped="train/cat/loop.jpg"),
    Case("symlink loop, fail", symlink_loop, "refused", LOOP, ("--on_bad_image=fail",)),
    Case("non-UTF-8 file name", non_utf8_file, "refused",
         r"Expected file and folder names in UTF-8 .* Received: 1 name .*'train/cat/caf\\xe9\.jpg'.* Rename it"),
    Case("non-UTF-8 class folder", non_utf8_class, "refused",
         r"Expected file and folder names in UTF-8 .* Received: 4 names .*'caf\\xe9'.* Rename them"),
    Case("folder name not a dataset name", bad_dataset_name, "refused",
         r"Expected --dataset to be letters.*Received: dataset='my pets \(2024\)'.*--dataset=my_pets_2024 to name it"),
    Case("one class", one_class, "refused",
         r"Expected at least two classes .* Received: 1 class \('cat'\)"),
    Case("class of one image", lonely_class, "works",
         r"1 class only in the (train|validation) split, none in the (validation|train) split: 'owl' \(1 image\)",
         class_names=("cat", "dog", "owl")),
    Case("training/ and validation/", training_validation, "works", class_names=CLASSES),
    Case("val/ beside extra/", val_and_extra, "refused",
         r"Expected a train/ \(or training/\) folder beside val/ .* Received: the folders extra/, val/"),
    Case("stray top-level folder", stray_folder, "refused",
         r"Expected only split folders beside train/, val/ .* Received also: extra/"),
    Case("train/ and training/", two_train_folders, "refused",
         r"Expected one training folder .* Received: train/, training/"),
    Case("bad --augmentations, no copies", ordinary, "refused",
         r"Expected --augmentations .* Received: 'flip,blur' \('blur' is not one of them\)",
         ("--augmentations=flip,blur",)),
    Case("float .npz outside 0..255", float_npz, "refused",
         r"to be uint8, or numbers in 0\.\.1 or 0\.\.255\. Received: float32 values from -10\.0 to 300\.0\. "
         r"Nothing is clipped"),
    Case("float .npz with NaN", nan_npz, "refused",
         r"to be uint8, or numbers in 0\.\.1 or 0\.\.255\. Received: .*1 of them NaN or infinite"),
    Case("empty --network=", ordinary, "refused",
         r"Expected --network to name a network: one of .*mobilenet_v2.*vgg16.* Received: ''", ("--network=",)),
)


# --------------------------------------------------------------------------------------------------
# User files: what a command must leave alone.


def file_state(path):
    """`(size, mtime_ns, sha256)` of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns, digest.hexdigest()


def snapshot(*paths):
    """The state of every regular file at or below `paths` (links are not followed).

    Returns:
        `{path: (size, mtime_ns, sha256)}`; a missing path adds nothing.
    """
    found = {}
    for path in paths:
        path = os.fspath(path)
        if os.path.isfile(path) and not os.path.islink(path):
            found[path] = file_state(path)
        elif os.path.isdir(path) and not os.path.islink(path):
            for folder, _, names in os.walk(path):
                for name in names:
                    full = os.path.join(folder, name)
                    if os.path.isfile(full) and not os.path.islink(full):
                        found[full] = file_state(full)
    return found


def destroyed(before):
    """The files of a `snapshot` that are now changed or gone, sorted."""
    return sorted(path for path, state in before.items()
                  if not os.path.isfile(path) or file_state(path) != state)
