"""`folder`: class sub-folders of images, `<root>/<class>/*.jpg`, or split folders holding them.

`<root>/train/<class>/...` (or `training/`) plus one of `val/`, `validation/`, `test/` with the same
class folders. Beside split folders, any other top-level folder is refused (it would otherwise be
taken for a class). Ids are the paths relative to `<root>`.
"""

import os

import numpy as np

from bottleneck_cache.pipeline.datasets import core
from bottleneck_cache.pipeline.datasets import errors
from bottleneck_cache.pipeline.datasets import listing

NAME = "folder"
LAYOUT = (
    "folder: class sub-folders of images (<root>/<class>/*.jpg), or train/ (or training/) plus val/, "
    "validation/ or test/, each holding the same class sub-folders"
)
TRAIN_FOLDERS = ("train", "training")
VALIDATION_FOLDERS = ("val", "validation", "test")


def detect(path):
    """Whether `path` is a folder with visible sub-folders (tried after every other format)."""
    return os.path.isdir(path) and bool(listing.visible_subfolders(path))


def load(root):
    """Loads a class-folder dataset: `<root>/<class>/...` or `<root>/train/<class>/...` + `<root>/val/...`.

    Args:
        root: the dataset folder.

    Returns:
        `{"train": Split}`, plus `"validation"` when `root` has a validation folder; the splits hold
        paths, and their ids are the paths relative to `root`.

    Raises:
        DatasetError: `root` is a file, a split or class folder is missing or empty, or the splits'
            class folders differ.
    """
    if not os.path.isdir(root):
        raise errors.DatasetError(
            f"Expected a folder of class sub-folders for --dataset_format=folder. Received: '{root}', "
            f"which is a file. Pass the folder, or choose another --dataset_format."
        )
    folders = listing.visible_subfolders(root)
    train_names = [name for name in folders if name.lower() in TRAIN_FOLDERS]
    validation_names = sorted((name for name in folders if name.lower() in VALIDATION_FOLDERS),
                              key=lambda name: VALIDATION_FOLDERS.index(name.lower()))
    if not train_names and not validation_names:
        return {"train": _folder_split(root, root, "train")}
    _check_split_folders(root, folders, train_names, validation_names)
    train_name = train_names[0]
    splits = {"train": _folder_split(root, os.path.join(root, train_name), "train")}
    if validation_names:
        name = validation_names[0]
        validation = _folder_split(root, os.path.join(root, name), "validation")
        _check_folder_classes(splits["train"], validation, name, train_name)
        splits["validation"] = validation
    return splits


def _check_split_folders(root, folders, train_names, validation_names):
    """Refuses a split layout that would be misread: no or two training folders, or other folders.

    Args:
        root: the dataset folder.
        folders: its visible sub-folders.
        train_names: those named like a training split (`TRAIN_FOLDERS`).
        validation_names: those named like a validation split (`VALIDATION_FOLDERS`).
    """
    splits = [f"{name}/" for name in train_names + validation_names]
    if not train_names:
        raise errors.DatasetError(
            f"Expected a train/ (or training/) folder beside {', '.join(splits)} in '{errors.shown(root)}'. "
            f"Received: the folders {', '.join(f'{name}/' for name in folders)}. Rename the training split's "
            f"folder to train/; or, if these folders are classes, rename {', '.join(splits)} (split names: "
            f"{', '.join(TRAIN_FOLDERS + VALIDATION_FOLDERS)})."
        )
    if len(train_names) > 1:
        raise errors.DatasetError(
            f"Expected one training folder in '{errors.shown(root)}'. Received: "
            f"{', '.join(splits[:len(train_names)])}. Merge them into train/, or move one out of the dataset folder."
        )
    others = [f"{name}/" for name in folders if name not in train_names + validation_names]
    if others:
        raise errors.DatasetError(
            f"Expected only split folders beside {', '.join(splits)} in '{errors.shown(root)}' (train/ or training/, "
            f"and val/, validation/ or test/). Received also: {', '.join(others[:errors.MAX_SHOWN])}"
            f"{' ...' if len(others) > errors.MAX_SHOWN else ''}, which would be read as neither. Move "
            f"{'them' if len(others) > 1 else 'it'} out of the dataset folder, or, for a class, into every "
            f"split folder."
        )


def _folder_split(root, folder, name):
    class_names = listing.visible_subfolders(folder)
    if not class_names:
        raise errors.DatasetError(
            f"Expected '{folder}' to hold one sub-folder of images per class. Received: no sub-folders. "
            f"Put the images in <class>/ folders, e.g. {os.path.join(folder, 'cat', 'cat_0.jpg')}."
        )
    files_per_class = [listing.image_files(os.path.join(folder, class_name)) for class_name in class_names]
    if not any(files_per_class):
        raise errors.DatasetError(
            f"Expected image files ({', '.join(listing.IMAGE_EXTENSIONS)}) in the class folders of '{folder}'. "
            f"Received: none in {len(class_names)} folders ({', '.join(class_names[:5])}"
            f"{', ...' if len(class_names) > 5 else ''}). Check the path and the file extensions."
        )
    empty = [class_name for class_name, files in zip(class_names, files_per_class) if not files]
    if empty:
        raise errors.DatasetError(
            f"Expected at least one image in every class folder of '{folder}'. Received: no images in "
            f"{', '.join(repr(class_name) for class_name in empty)}. Add images or remove the empty folder."
        )
    paths, labels = [], []
    for label, files in enumerate(files_per_class):
        paths.extend(files)
        labels.extend([label] * len(files))
    return core.Split(
        name=name,
        class_names=tuple(class_names),
        labels=np.asarray(labels, dtype=np.int64),
        ids=tuple(os.path.relpath(p, root).replace(os.sep, "/") for p in paths),
        paths=tuple(os.path.abspath(p) for p in paths),
    )


def _check_folder_classes(train, validation, folder_name, train_name="train"):
    if train.class_names == validation.class_names:
        return
    only_train = sorted(set(train.class_names) - set(validation.class_names))
    only_validation = sorted(set(validation.class_names) - set(train.class_names))
    raise errors.DatasetError(
        f"Expected {train_name}/ and {folder_name}/ to hold the same class folders. Received: only in "
        f"{train_name}/: {only_train or 'none'}; only in {folder_name}/: {only_validation or 'none'}. "
        f"Add or remove class folders so that both splits match."
    )
