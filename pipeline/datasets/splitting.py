"""Seeded `--per_class` selection, the stratified `--validation_split`, and `prepare_splits`."""

import dataclasses
import logging

import numpy as np

from bottleneck_cache.pipeline.datasets import errors
from bottleneck_cache.pipeline.datasets import registry

_LOGGER = logging.getLogger(__name__)


def select_per_class(split, per_class, seed):
    """Keeps `per_class` examples of each class, chosen at random with a fixed seed.

    Each class draws from its own generator seeded with `(seed, label)`, so the examples picked
    for one class do not depend on the other classes.

    Args:
        split: the split to sample from.
        per_class: examples to keep per class; must be a positive integer.
        seed: seed of the per-class permutations.

    Returns:
        A `Split` of `num_classes * per_class` samples, in their original order.

    Raises:
        DatasetError: `per_class` is not positive, or a class has fewer than `per_class` examples.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise errors.DatasetError(
            f"Expected per_class to be a positive integer. Received: {per_class!r}. "
            f"Pass --per_class >= 1, or leave it unset to keep every example."
        )
    chosen = []
    for label, class_name in enumerate(split.class_names):
        members = np.flatnonzero(split.labels == label)
        if len(members) < per_class:
            raise errors.DatasetError(
                f"Expected at least {per_class} examples of class '{class_name}' (label {label}) in split "
                f"'{split.name}'. Received: {len(members)}. Lower --per_class to at most {len(members)} or add "
                f"examples of that class."
            )
        rng = np.random.default_rng([int(seed), label])
        chosen.append(members[rng.permutation(len(members))[:per_class]])
    indices = np.sort(np.concatenate(chosen)) if chosen else np.zeros((0,), dtype=np.int64)
    return dataclasses.replace(split.subset(indices), seeded=True)


def split_validation(split, fraction, seed):
    """Splits off a stratified validation set.

    Uses `sklearn.model_selection.train_test_split`, stratified by label when every class present
    has at least 2 examples.

    Args:
        split: the split to divide.
        fraction: share of the samples that goes to validation, in (0, 1).
        seed: `random_state` of the split.

    Returns:
        `(train, validation)` splits named "train" and "validation", each in original order.

    Raises:
        DatasetError: `fraction` is outside (0, 1), or the split is too small to divide.
    """
    from sklearn.model_selection import train_test_split

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 < fraction < 1:
        raise errors.DatasetError(
            f"Expected the validation fraction to be a number strictly between 0 and 1. Received: {fraction!r}. "
            f"Pass e.g. --validation_split=0.2."
        )
    _, counts = np.unique(split.labels, return_counts=True)
    stratify = split.labels if len(counts) and counts.min() >= 2 else None
    try:
        train_indices, validation_indices = train_test_split(
            np.arange(len(split)), test_size=float(fraction), random_state=int(seed), stratify=stratify
        )
    except ValueError as error:
        raise errors.DatasetError(
            f"Expected split '{split.name}' to be large enough to hold out a validation fraction of {fraction} "
            f"({'stratified by class' if stratify is not None else 'unstratified'}). Received: {len(split)} "
            f"samples in {len(counts)} classes; scikit-learn says: {error}. Change --validation_split or add "
            f"examples."
        ) from error
    train = dataclasses.replace(split.subset(np.sort(train_indices)), name="train", seeded=True)
    validation = dataclasses.replace(
        split.subset(np.sort(validation_indices)), name="validation", seeded=True)
    return train, validation


def prepare_splits(path, dataset_format=None, per_class=None, validation_split=0.2, seed=0, allow_pickle=False):
    """Loads a dataset and returns its training and validation splits.

    If the dataset has no validation split, one is carved out of the training split with
    `split_validation`. If `per_class` is set, only the training split is reduced to `per_class`
    examples per class; the validation split stays whole.

    Args:
        path: a dataset file or folder; None loads scikit-learn's digits.
        dataset_format: one of `FORMATS`; None detects it.
        per_class: examples per class to keep in the training split; None or 0 keeps all.
        validation_split: fraction of the training split to hold out when there is no validation split.
        seed: seed for the validation split and the per-class selection.
        allow_pickle: whether pickled formats may be loaded (only for files you trust).

    Returns:
        `{"train": core.Split, "validation": Split}`.

    Raises:
        DatasetError: the dataset cannot be loaded or has fewer than two classes.

    A class with images in only one of the two splits (e.g. a class of one image) is kept, and a
    warning says which split lacks it and what that means for training.
    """
    splits = registry.load_dataset(path, dataset_format=dataset_format, allow_pickle=allow_pickle)
    train = splits["train"]
    check_two_classes(train, path)
    validation = splits.get("validation")
    if validation is None:
        train, validation = split_validation(train, validation_split, seed)
    if per_class:
        train = select_per_class(train, per_class, seed)
    for message in one_split_classes(train, validation):
        _LOGGER.warning(message)
    return {"train": train, "validation": validation}


def _images(count):
    return f"{count} image{'s' if count != 1 else ''}"


def check_two_classes(split, path):
    """Refuses a split whose samples belong to fewer than two classes.

    Args:
        split: the dataset's training split, as loaded.
        path: the dataset's location, for the message (None: the bundled digits).

    Raises:
        DatasetError: the samples hold fewer than two distinct labels.
    """
    present = np.unique(split.labels)
    if len(present) >= 2:
        return
    received = (f"1 class ({split.class_names[present[0]]!r})" if len(present) else "no samples")
    raise errors.DatasetError(
        f"Expected at least two classes to train a classifier on. Received: {received} in "
        f"'{errors.shown(path or 'digits')}' ({len(split)} samples). Add a sub-folder of images per class "
        f"(<dataset>/<class>/*.jpg), or check that --dataset_dir names the dataset, not one class folder."
    )


def one_split_classes(train, validation):
    """Describes each class that has samples in one split but none in the other.

    Args:
        train: the training split.
        validation: the validation split, with the same `class_names`.

    Returns:
        A list of warning messages (empty when every class with samples is in both splits).
    """
    counts = {name: np.bincount(split.labels, minlength=train.num_classes)
              for name, split in (("train", train), ("validation", validation))}
    messages = []
    for present, absent, effect in (
        ("train", "validation", "it is trained on, but the validation accuracy does not measure it"),
        ("validation", "train", "the head never sees it in training, so it never predicts it"),
    ):
        lonely = np.flatnonzero((counts[present] > 0) & (counts[absent] == 0))
        if len(lonely):
            shown = ", ".join(f"{train.class_names[label]!r} ({_images(counts[present][label])})"
                              for label in lonely[:errors.MAX_SHOWN])
            more = f" and {len(lonely) - errors.MAX_SHOWN} more" if len(lonely) > errors.MAX_SHOWN else ""
            messages.append(
                f"{len(lonely)} class{'es' * (len(lonely) != 1)} only in the {present} split, none in the "
                f"{absent} split: {shown}{more}. {'They are' if len(lonely) != 1 else 'It is'} kept: "
                f"{effect}. Add images to "
                f"{'them' if len(lonely) != 1 else 'it'} (at least 2 per class when the validation split is "
                f"carved out with --validation_split) to have every class in both splits."
            )
    return messages
