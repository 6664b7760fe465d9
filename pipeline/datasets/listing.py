"""Listing image files and class folders; hidden entries are skipped, unreadable folders refused."""

import os

from bottleneck_cache.pipeline.datasets import errors


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _is_visible(name):
    return not name.startswith(".")


def _unreadable(error):
    return errors.DatasetError(
        f"Expected a readable dataset folder. Received: '{error.filename}' cannot be read "
        f"({error.strerror}). Fix its permissions (e.g. chmod -R u+rX) or remove it."
    )


def visible_subfolders(path):
    """The sorted names of the sub-folders of `path`, hidden ones skipped; an unreadable `path` is refused."""
    try:
        names = os.listdir(path)
    except PermissionError as error:
        raise _unreadable(error) from None
    return sorted(name for name in names if _is_visible(name) and os.path.isdir(os.path.join(path, name)))


def image_files(folder):
    """Image files under `folder` (recursively, hidden entries skipped), sorted.

    Raises:
        DatasetError: a folder cannot be read (os.walk would skip it silently).
    """

    def fail(error):
        raise _unreadable(error)

    found = []
    for directory, subdirectories, files in os.walk(folder, onerror=fail):
        subdirectories[:] = sorted(name for name in subdirectories if _is_visible(name))
        for name in sorted(files):
            if _is_visible(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(directory, name))
    return found
