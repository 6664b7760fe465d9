"""Image decoding: any image file or array to 8-bit RGB of one size, and the decode-and-skip loop.

Grey, grey+alpha, RGBA, palette, CMYK and 16-bit images all become 8-bit RGB (alpha is dropped);
images are resized with bilinear filtering to exactly the size asked for, ignoring the aspect ratio
(as Keras' `image_dataset_from_directory` does by default). `decode_images` is the one loop that
extraction, prediction and fine-tuning use to leave out (and log) the images that cannot be decoded.
"""

import dataclasses
import errno
import logging
import os

import numpy as np
from PIL import Image

from bottleneck_cache.pipeline import checks
from bottleneck_cache.pipeline.datasets import errors

_LOGGER = logging.getLogger(__name__)


def check_image_size(image_size):
    """Returns `image_size` as `(height, width)` ints, refusing anything but two positive integers."""
    try:
        height, width = (int(value) for value in image_size)
        valid = height > 0 and width > 0 and tuple(image_size) == (height, width)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise errors.DatasetError(
            f"Expected image_size to be (height, width) with two positive integers. Received: {image_size!r}."
        )
    return height, width


def load_image_file(path, size):
    """Decodes `path` to a `(height, width, 3)` uint8 RGB array of `size = (height, width)`."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise errors.DatasetError(
            f"Expected '{errors.shown(path)}' to be a readable image. Received: {_failure(path, error)}. "
            f"{'Remove the link or point it at an image' if os.path.islink(path) else 'Remove or replace the file'}."
        ) from error
    return resize_rgb(rgb, size)


def _failure(path, error):
    """What went wrong opening `path`: a dangling symbolic link, a link loop, or `error` itself."""
    if os.path.islink(path):
        target = errors.shown(os.readlink(path))
        if getattr(error, "errno", None) == errno.ELOOP:
            return f"a symbolic link loop ('{target}' leads back to itself, never to a file)"
        if not os.path.exists(path):
            return f"a symbolic link to '{target}', which does not exist"
    return errors.shown(f"{type(error).__name__}: {error}")


def to_rgb(image):
    """Converts a decoded PIL image of any mode to an RGB PIL image with 8 bits per channel."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "I" or mode.startswith("I;16"):
        # 16-bit grey (PNG/TIFF) opens as "I;16*" or "I": keep the top 8 of 16 bits.
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values.size and values.min() >= 0 and values.max() <= 1:
            values = values * 255.0
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "PA" or (mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # Avoids Pillow's palette-transparency warning.
    return image.convert("RGB")


def array_to_rgb(image):
    """`(h, w)`, `(h, w, 1)`, `(h, w, 3)` or `(h, w, 4)` uint8 -> `(h, w, 3)` uint8 (alpha dropped)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[:, :, :3]


def resize_rgb(image, size):
    """Resizes a PIL image or `(h, w, 3)` array to a `(height, width, 3)` uint8 array, bilinear."""
    height, width = size
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (height, width):
            return image
        image = Image.fromarray(np.ascontiguousarray(image))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedImages:
    """A batch of decoded images, and the images left out because they could not be decoded.

    Attributes:
        images: `(k, height, width, 3)` uint8 RGB, one per kept position.
        kept: `(k,)` int64 positions the images came from, in the order asked for.
        skipped: `(name, reason)` of each position left out, in the order asked for.
        skipped_indices: `(len(skipped),)` int64 positions left out.
    """

    images: np.ndarray
    kept: np.ndarray
    skipped: tuple[tuple[str, str], ...]
    skipped_indices: np.ndarray


def decode_images(decode, indices, names, image_size, on_bad_image="skip", log=True):
    """Decodes the images at `indices`, leaving out (or stopping at) those that cannot be decoded.

    The one decode-and-skip loop of extraction, prediction and fine-tuning.

    Args:
        decode: `decode(index, (height, width)) -> (height, width, 3)` uint8, raising `DatasetError`
            for an image that cannot be decoded (e.g. `Split.image`, or `load_image_file` of a path).
        indices: `(n,)` integer positions to decode, in order.
        names: what each position is called in `skipped` and in the log (ids or paths), indexable
            by position.
        image_size: `(height, width)` of the decoded images.
        on_bad_image: "skip" leaves an image that cannot be decoded out (logged as `Skipped <name>:
            <reason>` when `log`); "fail" raises its `DatasetError`.
        log: whether to log each image left out.

    Returns:
        A `DecodedImages` of the `k <= n` images that could be decoded.

    Raises:
        DatasetError: an image cannot be decoded and `on_bad_image` is "fail", or a bad option.
    """
    checks.check_choice(on_bad_image, "on_bad_image", ("skip", "fail"), error=errors.DatasetError)
    size = check_image_size(image_size)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    batch = np.empty((len(indices), *size, 3), dtype=np.uint8)
    kept, skipped, skipped_indices = [], [], []
    for index in indices.tolist():
        try:
            batch[len(kept)] = decode(index, size)
        except errors.DatasetError as error:
            if on_bad_image == "fail":
                raise
            skipped.append((names[index], str(error)))
            skipped_indices.append(index)
            if log:
                _LOGGER.warning("Skipped %s: %s", names[index], error)
            continue
        kept.append(index)
    return DecodedImages(
        images=batch[:len(kept)],
        kept=np.asarray(kept, dtype=np.int64),
        skipped=tuple(skipped),
        skipped_indices=np.asarray(skipped_indices, dtype=np.int64),
    )
