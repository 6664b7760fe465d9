"""The one catalogue of bad inputs, shared by the tests and the fault suite (`benchmarks/faults/`).

* `ODD_IMAGES`: odd image files (`OddImage`: truncated, empty, not an image, PNG named .jpg,
  16-bit, CMYK, RGBA, palette PNG/GIF, grey), each with its writer and what extraction must do:
  skip and list it (with the reason), or decode it to RGB. Used by `tests/test_bad_images.py` and
  the fault suite's part 6 (`bad_images.py`).
* `CASES`: bad datasets and flags of issue 10 (`Case`): each builds one input under a folder (a
  tiny class-folder dataset with one thing wrong, or an `.npz` file) and says what
  `extract_features` must do with it: refuse it with one message, skip the bad image and list it,
  or work (possibly with a warning). Used by `tests/test_bad_inputs.py` and part 7 (`user_files.py`).
* `empty_class_folder`, `split_dataset`, `write_images`, `ordinary`: the datasets they go in.
* `snapshot` and `destroyed`: whether a command changed or removed any file it was not asked to
  write.

Uses NumPy and Pillow only, so that the fault suite can import it without pytest.
"""

import dataclasses
import hashlib
import io
import os
import shutil
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


def empty_class_folder(split_folder, class_name, leftover=None):
    """Makes `split_folder/class_name/` a class folder without images; returns its path.

    Args:
        split_folder: a split's folder, e.g. `root/train`.
        class_name: the class; its images, if any, are removed.
        leftover: the name of one non-image file to leave in it (e.g. "notes.txt"), or None.
    """
    folder = os.path.join(split_folder, class_name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    if leftover:
        with open(os.path.join(folder, leftover), "w") as f:
            f.write("nothing to see")
    return folder


# --------------------------------------------------------------------------------------------------
# Odd image files: one catalogue for tests/test_bad_images.py and the fault suite's part 6. Each
# writer takes a path and writes one file of its kind there, ODD_IMAGE_SIZE pixels when it decodes.

ODD_IMAGE_SIZE = (20, 24)  # (height, width)


def solid(mode, value):
    """A Pillow image of `ODD_IMAGE_SIZE` filled with `value` in `mode` (e.g. "RGB", (10, 200, 30))."""
    return Image.new(mode, (ODD_IMAGE_SIZE[1], ODD_IMAGE_SIZE[0]), value)


def write_truncated_jpeg(path):
    """A real 64x64 JPEG of noise, cut in half."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def write_empty(path):
    """A zero-byte file."""
    open(path, "wb").close()


def write_text(path):
    """A text file (give it an image's extension)."""
    with open(path, "w") as f:
        f.write("This is a README, not a picture.\n")


def write_png(path):
    """An RGB PNG (give it a .jpg name): solid (10, 200, 30)."""
    solid("RGB", (10, 200, 30)).save(path, format="PNG")


def write_grey16_png(path):
    """A 16-bit greyscale PNG (Pillow mode I;16), all white."""
    Image.fromarray(np.full(ODD_IMAGE_SIZE, 65535, np.uint16)).save(path, format="PNG")


def write_cmyk_jpeg(path):
    """A CMYK JPEG, all white."""
    solid("CMYK", (0, 0, 0, 0)).save(path, format="JPEG")


def write_rgba_png(path):
    """An RGBA PNG, half transparent (200, 100, 50)."""
    solid("RGBA", (200, 100, 50, 128)).save(path, format="PNG")


def write_palette(path, transparent=False):
    """A palette image (PNG or GIF, after the extension) of index 0 = (200, 100, 50).

    Args:
        path: where to write it.
        transparent: make palette index 1 (unused) transparent.
    """
    image = Image.new("P", (ODD_IMAGE_SIZE[1], ODD_IMAGE_SIZE[0]), 0)
    image.putpalette([200, 100, 50, 0, 0, 0] + [0] * 762)
    if transparent:
        image.save(path, transparency=1)
    else:
        image.save(path)


def write_transparent_palette(path):
    """A palette PNG whose unused index 1 is transparent."""
    write_palette(path, transparent=True)


def write_grey_jpeg(path):
    """A greyscale (mode L) JPEG of value 77."""
    solid("L", 77).save(path, format="JPEG")


@dataclasses.dataclass(frozen=True)
class OddImage:
    """One kind of odd image file and what extraction must do with it.

    Attributes:
        kind: its id, e.g. "truncated_jpeg" (file names are built from it).
        description: what it is, e.g. "truncated JPEG".
        extension: the file's extension, without the dot (which may lie, e.g. a PNG named .jpg).
        write: `write(path)` writes one such file.
        reason: undecodable kinds: a regex of what the skip reason says after "Received: ". Empty for
            decodable ones.
        opened_as: decodable kinds: `(Pillow format, mode)` of the file.
        rgb: decodable kinds: the RGB value every decoded pixel has.
        tolerance: how far from `rgb` a decoded pixel may be (JPEG rounding).
    """

    kind: str
    description: str
    extension: str
    write: Callable
    reason: str = ""
    opened_as: tuple = ()
    rgb: tuple = ()
    tolerance: int = 0

    @property
    def outcome(self):
        """"skipped" (listed in the cache's skipped list) or "kept" (decoded to RGB, one row)."""
        return "skipped" if self.reason else "kept"

    def problem(self, path):
        """None when the file at `path` is of this kind (decodable or not, as intended), else what is wrong."""
        try:
            with Image.open(path) as image:
                image.load()
                opened = (image.format, image.mode)
        except (OSError, SyntaxError, ValueError):
            return None if self.reason else "does not decode"
        if self.reason:
            return f"decodes ({opened[0]} {opened[1]})"
        return None if opened == self.opened_as else f"is {opened[0]} {opened[1]}, wanted {self.opened_as}"


UNIDENTIFIED = r"UnidentifiedImageError: cannot identify image file"

ODD_IMAGES = (
    OddImage("truncated_jpeg", "truncated JPEG", "jpg", write_truncated_jpeg, r"OSError: image file is truncated"),
    OddImage("zero_byte_jpeg", "zero-byte file", "jpg", write_empty, UNIDENTIFIED),
    OddImage("text_named_png", "non-image file", "png", write_text, UNIDENTIFIED),
    OddImage("png_named_jpg", "PNG named .jpg", "jpg", write_png, opened_as=("PNG", "RGB"), rgb=(10, 200, 30)),
    OddImage("grey16_png", "16-bit PNG", "png", write_grey16_png, opened_as=("PNG", "I;16"), rgb=(255, 255, 255)),
    OddImage("cmyk_jpeg", "CMYK JPEG", "jpg", write_cmyk_jpeg, opened_as=("JPEG", "CMYK"), rgb=(255, 255, 255),
             tolerance=3),
    OddImage("rgba_png", "RGBA PNG", "png", write_rgba_png, opened_as=("PNG", "RGBA"), rgb=(200, 100, 50)),
    OddImage("palette_png", "palette PNG", "png", write_palette, opened_as=("PNG", "P"), rgb=(200, 100, 50)),
    OddImage("palette_png_transparent", "palette PNG, transparent index", "png", write_transparent_palette,
             opened_as=("PNG", "P"), rgb=(200, 100, 50)),
    OddImage("palette_gif", "palette GIF", "gif", write_palette, opened_as=("GIF", "P"), rgb=(200, 100, 50)),
    OddImage("grey_jpeg", "grey JPEG", "jpg", write_grey_jpeg, opened_as=("JPEG", "L"), rgb=(77, 77, 77),
             tolerance=2),
)


# --------------------------------------------------------------------------------------------------
# The inputs. Each builder takes a parent folder and returns the dataset path it made there; the
# `case` decorators above it register what extract_features must do with it (in `CASES`).


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


_REGISTERED = []


def case(name, outcome, match="", **options):
    """Registers the decorated builder as the `Case(name, builder, outcome, match, **options)`."""
    def register(build):
        _REGISTERED.append(Case(name, build, outcome, match, **options))
        return build
    return register


DANGLING = (r"gone\.jpg' to be a readable image\. Received: a symbolic link to '.*no_such_picture\.jpg', "
            r"which does not exist")
LOOP = r"loop\.jpg' to be a readable image\. Received: a symbolic link loop"
FAIL = ("--on_bad_image=fail",)


@case("dangling symlink, fail", "refused", DANGLING, flags=FAIL)
@case("dangling symlink, skip", "skipped", DANGLING, skipped="train/cat/gone.jpg")
def dangling_symlink(parent):
    """A link to a missing file among the images: `train/cat/gone.jpg`."""
    root = split_dataset(os.path.join(parent, "dangling"))
    os.symlink(os.path.join(parent, "no_such_picture.jpg"), os.path.join(root, "train", "cat", "gone.jpg"))
    return root


@case("symlink loop, fail", "refused", LOOP, flags=FAIL)
@case("symlink loop, skip", "skipped", LOOP, skipped="train/cat/loop.jpg")
def symlink_loop(parent):
    """A link to itself among the images: `train/cat/loop.jpg`."""
    root = split_dataset(os.path.join(parent, "loop"))
    os.symlink("loop.jpg", os.path.join(root, "train", "cat", "loop.jpg"))
    return root


@case("non-UTF-8 file name", "refused",
      r"Expected file and folder names in UTF-8 .* Received: 1 name .*'train/cat/caf\\xe9\.jpg'.* Rename it")
def non_utf8_file(parent):
    """An image whose file name is Latin-1, not UTF-8: `train/cat/caf\\xe9.jpg`."""
    root = split_dataset(os.path.join(parent, "latin1_file"))
    os.rename(os.path.join(root, "train", "cat", "cat_0.jpg"),
              os.path.join(os.fsencode(root), b"train", b"cat", b"caf\xe9.jpg"))
    return root


@case("non-UTF-8 class folder", "refused",
      r"Expected file and folder names in UTF-8 .* Received: 4 names .*'caf\\xe9'.* Rename them")
def non_utf8_class(parent):
    """A class folder whose name is Latin-1: `train/caf\\xe9/` and `val/caf\\xe9/`."""
    root = split_dataset(os.path.join(parent, "latin1_class"))
    for split in (b"train", b"val"):
        os.rename(os.path.join(os.fsencode(root), split, b"dog"), os.path.join(os.fsencode(root), split, b"caf\xe9"))
    return root


@case("folder name not a dataset name", "refused",
      r"Expected --dataset to be letters.*Received: dataset='my pets \(2024\)'.*--dataset=my_pets_2024 to name it")
def bad_dataset_name(parent):
    """A dataset folder whose name is not a valid `--dataset` value: `my pets (2024)`."""
    return split_dataset(os.path.join(parent, "my pets (2024)"))


@case("one class", "refused", r"Expected at least two classes .* Received: 1 class \('cat'\)")
def one_class(parent):
    """Only one class folder, `cat`, in `train/` and `val/`."""
    return split_dataset(os.path.join(parent, "one_class"), classes=("cat",))


@case("class of one image", "works",
      r"1 class only in the (train|validation) split, none in the (validation|train) split: 'owl' \(1 image\)",
      class_names=("cat", "dog", "owl"))
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


@case("training/ and validation/", "works", class_names=CLASSES)
def training_validation(parent):
    """Split folders named `training/` and `validation/`."""
    return split_dataset(os.path.join(parent, "long_names"), train_folder="training", val_folder="validation")


@case("val/ beside extra/", "refused",
      r"Expected a train/ \(or training/\) folder beside val/ .* Received: the folders extra/, val/")
def val_and_extra(parent):
    """`val/` beside `extra/`, no training folder (once read as two classes, val and extra)."""
    root = os.path.join(parent, "val_extra")
    split_dataset(root, train_folder="extra", val_folder="val")
    return root


@case("stray top-level folder", "refused", r"Expected only split folders beside train/, val/ .* Received also: extra/")
def stray_folder(parent):
    """`train/` and `val/` plus a third folder `extra/` that is neither."""
    root = split_dataset(os.path.join(parent, "stray"))
    write_images(os.path.join(root, "extra", "cat"), "cat", 2)
    return root


@case("train/ and training/", "refused", r"Expected one training folder .* Received: train/, training/")
def two_train_folders(parent):
    """Both `train/` and `training/`."""
    root = split_dataset(os.path.join(parent, "two_train"))
    write_images(os.path.join(root, "training", "cat"), "cat", 2)
    return root


@case("float .npz outside 0..255", "refused",
      r"to be uint8, or numbers in 0\.\.1 or 0\.\.255\. Received: float32 values from -10\.0 to 300\.0\. "
      r"Nothing is clipped")
def float_npz(parent, low=-10.0, high=300.0):
    """An `.npz` of float images with values from `low` to `high` (labels 0, 1, 0, 1, ...)."""
    path = os.path.join(parent, "floats.npz")
    os.makedirs(parent, exist_ok=True)
    x = np.linspace(low, high, 8 * SIZE * SIZE * 3, dtype=np.float32).reshape(8, SIZE, SIZE, 3)
    np.savez(path, x=x, y=np.arange(8) % 2)
    return path


@case("float .npz with NaN", "refused",
      r"to be uint8, or numbers in 0\.\.1 or 0\.\.255\. Received: .*1 of them NaN or infinite")
def nan_npz(parent):
    """An `.npz` of float images in 0..1 with one NaN."""
    path = float_npz(parent, 0.0, 1.0)
    with np.load(path) as arrays:
        x, y = arrays["x"].copy(), arrays["y"]
    x[3, 2, 2, 1] = np.nan
    np.savez(path, x=x, y=y)
    return path


@case("empty --network=", "refused",
      r"Expected --network to name a network: one of .*mobilenet_v2.*vgg16.* Received: ''", flags=("--network=",))
@case("bad --augmentations, no copies", "refused",
      r"Expected --augmentations .* Received: 'flip,blur' \('blur' is not one of them\)",
      flags=("--augmentations=flip,blur",))
def ordinary(parent):
    """A plain `train/` + `val/` dataset with nothing wrong (the cases above give it bad flags)."""
    return split_dataset(os.path.join(parent, "ordinary"))


CASES = tuple(_REGISTERED)


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
