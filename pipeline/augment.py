"""Random image transforms for cached augmentation: K augmented views per training image.

Stage one can store, next to each training image's features, the features of `K` augmented views
of it (`--augment_copies K --augmentations flip,crop,color`). This module makes those views. It is
pure NumPy and Pillow, never imports TensorFlow, and keeps no state.

Transforms (`TRANSFORMS`):

* `flip`: horizontal mirror with probability 0.5.
* `crop`: a crop whose sides are 80-100% of the image's sides, with a random aspect ratio change in
  3/4-4/3 (log-uniform; a side that would exceed the image is clamped to it), at a random position,
  resized back to the image's size. A mild Inception-style RandomResizedCrop.
* `zoom`: zoom in or out about the centre by a factor in 0.9-1.1. Zooming out shows more than
  the image holds; the missing border is filled by reflecting the image at its edges.
* `color`: brightness, contrast and saturation jitter, each by a factor in 0.8-1.2 (that is,
  +-0.2, as in torchvision's `ColorJitter(0.2, 0.2, 0.2)`), applied in a random order; values are
  clipped to 0-255 after each step.

Whatever order the names are given in, the transforms run in one fixed order: the geometric ones
(`crop`, then `zoom` about the crop's centre) are composed into one source box and resampled once,
then `flip`, then `color`. Each transform draws its random parameters from its own fixed slots of a
single draw, so enabling or disabling one transform never changes the parameters of another.

Resampling: the images given here are already at the network's input size, so a crop is upsampled
from those pixels (Pillow, bicubic) rather than cut from the full-resolution source image. Such
views are a little softer than ideal crops of the original; for the mild 80-100% crops used here the
difference is small, and it keeps augmentation independent of how images are decoded and resized.

Determinism: `augment_batch` seeds each image's generator with `(seed, sample_index, copy_index)`,
so a view depends only on those and the transforms, never on the batch it came in, its position
in the batch, or the other images. Resumed and sharded extractions therefore get identical views.
"""

import math

import numpy as np
from PIL import Image

TRANSFORMS = ("flip", "crop", "zoom", "color")

FLIP_PROBABILITY = 0.5
CROP_SIDE_RANGE = (0.8, 1.0)
CROP_ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
ZOOM_RANGE = (0.9, 1.1)
BRIGHTNESS_RANGE = (0.8, 1.2)
CONTRAST_RANGE = (0.8, 1.2)
SATURATION_RANGE = (0.8, 1.2)
# ITU-R 601-2 luma weights, as in Pillow's "L" conversion.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
RESAMPLE = Image.Resampling.BICUBIC

# Slots of the one uniform draw each image makes; every transform owns its own slots.
_FLIP = 0
_CROP_SIDE, _CROP_ASPECT, _CROP_LEFT, _CROP_TOP = 1, 2, 3, 4
_ZOOM = 5
_BRIGHTNESS, _CONTRAST, _SATURATION = 6, 7, 8
_COLOR_ORDER = slice(9, 12)
_NUM_DRAWS = 12


def parse_transforms(text):
    """Parses a comma-separated list of transform names, e.g. `"flip,crop,color"`.

    Args:
        text: the `--augmentations` value; `None` or an empty string means no augmentation.
            Names are case-insensitive; spaces around them are ignored.

    Returns:
        A tuple of distinct names from `TRANSFORMS`, in `TRANSFORMS` order (the order they are
        applied in); `()` for no augmentation.

    Raises:
        ValueError: a name is unknown, empty or repeated.
    """
    if text is None or not str(text).strip():
        return ()
    names = [name.strip().lower() for name in str(text).split(",")]
    for name in names:
        if name not in TRANSFORMS:
            raise ValueError(_transforms_message(text, f"'{name}' is not one of them"))
    repeated = sorted({name for name in names if names.count(name) > 1}, key=TRANSFORMS.index)
    if repeated:
        raise ValueError(_transforms_message(text, f"{', '.join(repeated)} is repeated"))
    return tuple(name for name in TRANSFORMS if name in names)


def _transforms_message(text, problem):
    return (
        f"Expected --augmentations to be a comma-separated list of {', '.join(TRANSFORMS)}. "
        f"Received: '{text}' ({problem}). Pass each name at most once, e.g. "
        f"--augmentations=flip,crop,color, or an empty value for no augmentation."
    )


def _check_transforms(transforms):
    """Returns `transforms` (a string or a sequence of names) as a canonical tuple of names."""
    if transforms is None or isinstance(transforms, str):
        return parse_transforms(transforms)
    return parse_transforms(",".join(str(name) for name in transforms)) if transforms else ()


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(
            f"Expected image to be a (height, width, 3) uint8 array. "
            f"Received: shape {image.shape}, dtype {image.dtype}. Pass one RGB image as decoded, "
            "before preprocessing."
        )
    return image


def augment_image(image, transforms, rng):
    """Returns one randomly augmented view of an image.

    Args:
        image: `(height, width, 3)` uint8 RGB array. It is not modified.
        transforms: names from `TRANSFORMS` (any order; applied in the module's fixed order), or a
            comma-separated string as accepted by `parse_transforms`.
        rng: a `np.random.Generator`. One fixed-size array of uniforms is drawn from it, whichever
            transforms are enabled, so the generator advances the same way for every call.

    Returns:
        A new `(height, width, 3)` uint8 array.

    Raises:
        ValueError: `image` is not a non-empty `(height, width, 3)` uint8 array, or a transform
            name is invalid.
    """
    image = _check_image(image)
    transforms = _check_transforms(transforms)
    draws = rng.random(_NUM_DRAWS)
    height, width = image.shape[:2]
    box = (0.0, 0.0, float(width), float(height))
    if "crop" in transforms:
        box = _crop_box(height, width, draws)
    if "zoom" in transforms:
        box = _zoom_box(box, _uniform(ZOOM_RANGE, draws[_ZOOM]))
    output = _resample(image, box) if box != (0.0, 0.0, float(width), float(height)) else image
    if "flip" in transforms and draws[_FLIP] < FLIP_PROBABILITY:
        output = output[:, ::-1]
    if "color" in transforms:
        output = _jitter_color(output, draws)
    return np.ascontiguousarray(output) if output is not image else image.copy()


def augment_batch(images, transforms, seed, sample_indices, copy_index):
    """Returns one augmented view of each image of a batch, reproducibly.

    View `copy_index` of the image at position `sample_indices[i]` of its split depends only on
    `(seed, sample_indices[i], copy_index, transforms)`: each image gets its own generator,
    `np.random.default_rng(np.random.SeedSequence([seed, sample_index, copy_index]))`.

    Args:
        images: `(n, height, width, 3)` uint8 RGB array, already at the network's input size.
        transforms: names from `TRANSFORMS`, or a comma-separated string; empty means none.
        seed: non-negative int, the run's `--seed`.
        sample_indices: `(n,)` non-negative ints, each image's position in its split.
        copy_index: int >= 1, which of the `K` augmented copies to make (copy 0 is the original).

    Returns:
        A new `(n, height, width, 3)` uint8 array.

    Raises:
        ValueError: an argument has the wrong shape, type or range, or a transform name is invalid.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"Expected images to be an (n, height, width, 3) uint8 array. "
            f"Received: shape {images.shape}, dtype {images.dtype}. Pass a batch of RGB images as "
            "decoded, before preprocessing."
        )
    sample_indices = np.asarray(sample_indices)
    if sample_indices.shape != (len(images),) or not _all_non_negative_ints(sample_indices):
        raise ValueError(
            f"Expected sample_indices to be {len(images)} non-negative integers, one per image. "
            f"Received: shape {sample_indices.shape}, dtype {sample_indices.dtype}. Pass each "
            "image's index in its split, which seeds its views."
        )
    seed = _check_int(seed, "seed", minimum=0)
    copy_index = _check_int(copy_index, "copy_index", minimum=1)
    transforms = _check_transforms(transforms)
    output = np.empty_like(images)
    for i, (image, sample_index) in enumerate(zip(images, sample_indices)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(sample_index), copy_index]))
        output[i] = augment_image(image, transforms, rng)
    return output


def _all_non_negative_ints(values):
    return values.size == 0 or (np.issubdtype(values.dtype, np.integer) and values.min() >= 0)


def _check_int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Expected {name} to be an integer >= {minimum}. Received: {value!r}. Pass "
                         f"e.g. {name}={minimum}.")
    return int(value)


def _uniform(bounds, draw):
    """Maps a uniform draw in [0, 1) onto `[low, high)`."""
    low, high = bounds
    return low + (high - low) * float(draw)


def _crop_box(height, width, draws):
    """Returns the `(left, top, right, bottom)` box of a random crop, in pixels."""
    side = _uniform(CROP_SIDE_RANGE, draws[_CROP_SIDE])
    log_aspect = _uniform(tuple(math.log(a) for a in CROP_ASPECT_RANGE), draws[_CROP_ASPECT])
    aspect = math.sqrt(math.exp(log_aspect))
    crop_width = min(float(width), side * width * aspect)
    crop_height = min(float(height), side * height / aspect)
    left = (width - crop_width) * float(draws[_CROP_LEFT])
    top = (height - crop_height) * float(draws[_CROP_TOP])
    return (left, top, left + crop_width, top + crop_height)


def _zoom_box(box, factor):
    """Scales `box` about its centre by `1 / factor`: `factor > 1` zooms in, `< 1` zooms out."""
    left, top, right, bottom = box
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    half_width, half_height = (right - left) / (2 * factor), (bottom - top) / (2 * factor)
    return (centre_x - half_width, centre_y - half_height, centre_x + half_width, centre_y + half_height)


def _resample(image, box):
    """Resizes the `box` region of `image` to the image's size; reflects the image past its edges.

    Args:
        image: `(height, width, 3)` uint8 array.
        box: `(left, top, right, bottom)` in pixels, possibly reaching outside the image.

    Returns:
        `(height, width, 3)` uint8 array.
    """
    height, width = image.shape[:2]
    left, top, right, bottom = box
    margin = math.ceil(max(0.0, -left, -top, right - width, bottom - height))
    if margin:
        image = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="reflect")
        box = (left + margin, top + margin, right + margin, bottom + margin)
    resized = Image.fromarray(image).resize((width, height), RESAMPLE, box=box)
    return np.array(resized)  # A writable copy; np.asarray of a Pillow image is read-only.


def _jitter_color(image, draws):
    """Applies brightness, contrast and saturation jitter in a random order.

    Works on colour planes, `(3, height, width)`, where NumPy broadcasts a grey plane much faster
    than a `(height, width, 1)` one over interleaved pixels.

    Args:
        image: `(height, width, 3)` uint8 array.
        draws: the image's uniform draws; the factors and the order come from the color slots.

    Returns:
        `(height, width, 3)` uint8 array.
    """
    steps = (
        (_adjust_brightness, _uniform(BRIGHTNESS_RANGE, draws[_BRIGHTNESS])),
        (_adjust_contrast, _uniform(CONTRAST_RANGE, draws[_CONTRAST])),
        (_adjust_saturation, _uniform(SATURATION_RANGE, draws[_SATURATION])),
    )
    planes = image.transpose(2, 0, 1).astype(np.float32, order="C")
    for step in np.argsort(draws[_COLOR_ORDER], kind="stable"):
        adjust, factor = steps[step]
        planes = np.clip(adjust(planes, np.float32(factor)), 0.0, 255.0, out=planes)
    return np.rint(planes, out=planes).astype(np.uint8).transpose(1, 2, 0)


def _luma(planes):
    """`(3, height, width)` float32 RGB planes -> `(height, width)` float32 grey levels."""
    red, green, blue = planes
    red_weight, green_weight, blue_weight = (np.float32(weight) for weight in LUMA_WEIGHTS)
    return red * red_weight + green * green_weight + blue * blue_weight


def _adjust_brightness(planes, factor):
    """Scales every value by `factor`: blends with black."""
    return np.multiply(planes, factor, out=planes)


def _adjust_contrast(planes, factor):
    """Blends with the image's mean grey level."""
    mean = np.float32(_luma(planes).mean())
    planes -= mean
    planes *= factor
    planes += mean
    return planes


def _adjust_saturation(planes, factor):
    """Blends each pixel with its own grey level."""
    grey = _luma(planes)
    planes -= grey
    planes *= factor
    planes += grey
    return planes
