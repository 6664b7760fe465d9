"""What a cache is, without reading one: its attributes, fingerprint, pairing key and file names.

Nothing here imports h5py. `CacheMetadata` is the typed set of root attributes
that determines a cache's features, and `fingerprint()` their SHA-256;
`PAIRED_ATTRIBUTES` and `pair_key` say which caches form a training and
validation pair. File names are made and read back here only:
`cache_filename` and its inverse `parse_cache_filename` (the lab's
`<network>_<dataset>[_<per_class>][_aug<K>]_bottleneck_features_<split>.h5`,
also the names of its `.p` pickles), `shard_filename`, and the working files
beside a cache being written (`working_prefix`, `parts_folder`,
`is_parts_folder`, `part_filename`).
"""

import dataclasses
import hashlib
import json
import os
import re
from typing import Optional

import numpy as np

from bottleneck_cache.pipeline import checks

FORMAT_NAME = "bottleneck-cache"
FORMAT_VERSION = 2
SPLITS = ("train", "validation")
# What a training and a validation cache must share to be a pair (stage two checks these, and
# the dataset, and pairs caches of a batch by them).
PAIRED_ATTRIBUTES = ("network", "weights", "weights_sha256", "layer", "pooling", "input_size",
                     "preprocessing", "precision")
# Root attributes recording how close the features are to float32 ones; not part of the
# fingerprint (a measurement, not a setting).
FIDELITY_ATTRS = ("fidelity", "fidelity_cosine_median", "fidelity_cosine_p1", "fidelity_cosine_min",
                  "fidelity_images")
# The suffixes of a cache's name: an HDF5 cache, or a Udacity lab pickle (`pipeline.lab_pickles`).
SUFFIXES = (".h5", ".p")
NAME_PATTERN = "<network>_<dataset>[_<per_class>][_aug<K>]_bottleneck_features_<train|validation>.h5"
_NAME = re.compile(r"^(?P<stem>.+?)(?:_(?P<per_class>\d+))?(?:_aug(?P<augment_copies>\d+))?"
                   r"_bottleneck_features_(?P<split>train|validation)(?P<suffix>\.h5|\.p)$")
_PARTS_SUFFIX = ".parts"


class CacheError(ValueError):
    """A cache file is missing, malformed, incomplete or does not match."""


def decode_text(value):
    """An HDF5 string value as `str` (h5py may return UTF-8 `bytes`); other values unchanged."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def show_value(value):
    """`repr` of a value, with NumPy scalars shown as plain Python ones."""
    return repr(value.item() if isinstance(value, np.generic) else value)


@dataclasses.dataclass(frozen=True)
class CacheMetadata:
    """Everything that determines the features in a cache file.

    Attributes:
        network: canonical registry name, e.g. `"mobilenet_v2"`.
        weights: `"imagenet"`, `"none"`, or `"file:<basename>"`.
        weights_sha256: SHA-256 of the weights file, or `""`.
        layer: name of the layer whose output was taken, or `""` for the
            network's own output (`include_top=False` plus `pooling`).
        pooling: `"avg"`, `"max"` or `"none"`.
        input_size: `(height, width)` images were resized to.
        preprocessing: how pixels became network input, e.g.
            `"rgb; resize=bilinear; keras.applications.vgg16.preprocess_input"`.
        dataset: dataset name, e.g. `"cifar10"`.
        dataset_digest: SHA-256 over the class names, sample ids and labels.
        split: `"train"` or `"validation"`.
        per_class: examples kept per class, 0 for all (always 0 for validation).
        seed: seed of the per-class selection or of the carved validation split
            that chose this split's samples, or of the random weights; else 0.
        library_versions: JSON object of package versions.
        engine: what ran the network, e.g. `"keras"` or `"openvino"`.
        precision: `"float32"`, `"bfloat16"` or `"float16"`.
        augmentations: comma list of the transforms of augmented views, or `""`.
        augment_copies: augmented views per sample (0 for none; always 0 for
            validation).
    """

    network: str
    weights: str
    weights_sha256: str
    layer: str
    pooling: str
    input_size: tuple
    preprocessing: str
    dataset: str
    dataset_digest: str
    split: str
    per_class: int
    seed: int
    library_versions: str
    engine: str = "keras"
    precision: str = "float32"
    augmentations: str = ""
    augment_copies: int = 0

    def to_attrs(self):
        """Returns the metadata as a dict of HDF5-storable attribute values."""
        attrs = dataclasses.asdict(self)
        attrs["input_size"] = np.asarray(self.input_size, dtype=np.int64)
        return attrs

    @classmethod
    def from_attrs(cls, attrs, path):
        """Builds metadata from a file's root attributes, checking each one's type.

        Args:
            attrs: a mapping of attribute names to HDF5 values (a file's `attrs`).
            path: the file, for messages.

        Raises:
            CacheError: an attribute is missing or of the wrong type.
        """
        values = {}
        for field in dataclasses.fields(cls):
            if field.name not in attrs:
                raise CacheError(
                    f"{path} is not a valid bottleneck cache: attribute `{field.name}` is "
                    f"missing. Expected every attribute of format version {FORMAT_VERSION}: "
                    f"{', '.join(f.name for f in dataclasses.fields(cls))}. Extract it again "
                    "with extract_features --overwrite."
                )
            values[field.name] = _attribute(attrs[field.name], field.type, field.name, path)
        return cls(**values)

    def fingerprint(self):
        """Returns the SHA-256 hex digest of every field, canonically encoded."""
        payload = dataclasses.asdict(self)
        payload["input_size"] = list(self.input_size)
        payload["format_version"] = FORMAT_VERSION
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def differences(self, other):
        """Lists the fields that differ from `other` as `name: mine != theirs`."""
        return [
            f"{field.name}: {getattr(self, field.name)!r} != {getattr(other, field.name)!r}"
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(other, field.name)
        ]


def _attribute(value, kind, name, path):
    """Converts an HDF5 attribute value to `kind` (str, int or tuple of ints)."""
    value = decode_text(value)
    if kind is tuple:
        array = np.asarray(value)
        ok = array.ndim == 1 and array.dtype.kind in "iu"
        value = tuple(int(v) for v in array) if ok else value
    elif kind is int:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        value = int(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise CacheError(
            f"{path} is not a valid bottleneck cache: expected attribute `{name}` to be "
            f"{'a list of integers' if kind is tuple else kind.__name__}. Received: {show_value(value)}. "
            "Extract it again with extract_features --overwrite."
        )
    return value


def pair_key(metadata):
    """What the other split's cache must share with `metadata`: dataset and `PAIRED_ATTRIBUTES`."""
    return tuple(getattr(metadata, name) for name in ("dataset", *PAIRED_ATTRIBUTES))


@dataclasses.dataclass(frozen=True)
class Cache:
    """A validated cache file, loaded into memory.

    Attributes:
        path: the file it was read from.
        metadata: the settings that produced it.
        features: float32 `(num_samples, *feature_shape)`.
        labels: int64 `(num_samples,)`.
        filenames: `(num_samples,)` sample ids.
        class_names: `(num_classes,)` names; `labels` index into it.
        skipped: `(filename, reason)` of each sample left out (an image that
            could not be decoded).
        fingerprint: the file's fingerprint.
        views: int16 `(num_samples,)`: 0 for a row of the image itself, `k`
            for its `k`-th augmented view (whose filename is its source's).
    """

    path: str
    metadata: CacheMetadata
    features: np.ndarray
    labels: np.ndarray
    filenames: tuple
    class_names: tuple
    skipped: tuple
    fingerprint: str
    views: np.ndarray

    @property
    def feature_shape(self):
        """The shape of one sample's features."""
        return tuple(self.features.shape[1:])


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """What `verify_cache` found in a valid cache file.

    Attributes:
        metadata: the settings that produced it.
        fingerprint: its fingerprint.
        num_samples: feature rows.
        num_skipped: samples left out at extraction.
        samples: for a part file, its `(start, stop, total)` sample range; else None.
    """

    metadata: CacheMetadata
    fingerprint: str
    num_samples: int
    num_skipped: int
    samples: Optional[tuple] = None


def check_labels(labels, num_classes, path):
    """Refuses labels that are not 1-D or not in `[0, num_classes)`.

    Args:
        labels: integer array, `(num_samples,)` when valid.
        num_classes: the number of class names.
        path: the cache, for messages.

    Raises:
        CacheError: the labels have another rank, or one is out of range.
    """
    if labels.ndim != 1:
        raise CacheError(f"Expected labels of shape (num_samples,) in {path}. Received: {labels.shape}.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise CacheError(
            f"Expected labels in [0, {num_classes}) (one per class name) in {path}. "
            f"Received: label {bad}. The file is corrupt or was not written by "
            "extract_features; extract it again with --overwrite."
        )


# --------------------------------------------------------------------------------------------------
# File names


@dataclasses.dataclass(frozen=True)
class CacheName:
    """What a cache's file name says (see `cache_filename` and `parse_cache_filename`).

    Attributes:
        stem: `"<network>_<dataset>"`, e.g. `"vgg_cifar10"` (only the network
            registry can tell where the network's name ends).
        split: `"train"` or `"validation"`.
        per_class: examples per class, 0 when the name has none.
        augment_copies: augmented views per image, 0 when the name has none.
        suffix: `".h5"`, or `".p"` for a Udacity lab pickle.
    """

    stem: str
    split: str
    per_class: int = 0
    augment_copies: int = 0
    suffix: str = ".h5"

    @property
    def run_name(self):
        """The name without the split: e.g. `"vgg_cifar10_100_aug4"` (a run folder's name)."""
        parts = [self.stem]
        if self.per_class:
            parts.append(str(self.per_class))
        if self.augment_copies:
            parts.append(f"aug{self.augment_copies}")
        return "_".join(parts)

    @property
    def filename(self):
        """The file name, e.g. `"vgg_cifar10_100_aug4_bottleneck_features_train.h5"`."""
        return f"{self.run_name}_bottleneck_features_{self.split}{self.suffix}"


def cache_filename(network, dataset, split, per_class=None, augment_copies=0):
    """Returns the lab's file name for a split's cache.

    `per_class` appears only in the training file's name, as in the Udacity lab
    (`vgg_cifar10_100_bottleneck_features_train`), since the validation split is
    always kept whole; so does `_aug<K>` for K augmented views per image, so a
    cache with views and one without can sit side by side.

    Args:
        network: the network name as the user gave it, e.g. `"vgg"`.
        dataset: the dataset name, e.g. `"cifar10"`.
        split: `"train"` or `"validation"`.
        per_class: examples per class in the training split, or None.
        augment_copies: augmented views per training image (0 for none).

    Returns:
        e.g. `"vgg_cifar10_100_bottleneck_features_train.h5"`, or
        `"vgg_cifar10_100_aug4_bottleneck_features_train.h5"`.
    """
    checks.check_choice(split, "split", SPLITS)
    train = split == "train"
    return CacheName(f"{network.lower()}_{dataset}", split, per_class=(per_class or 0) if train else 0,
                     augment_copies=augment_copies if train else 0).filename


def parse_cache_filename(path):
    """Reads a cache's file name back: the inverse of `cache_filename`.

    Lab pickles (`.p`) are named the same way. A `_<digits>` or `_aug<digits>`
    before `_bottleneck_features` is read as the per-class count or the
    augmented views, in any split.

    Args:
        path: a cache path, e.g. `"caches/vgg_cifar10_100_bottleneck_features_train.h5"`.

    Returns:
        A `CacheName`, e.g. `CacheName("vgg_cifar10", "train", 100, 0, ".h5")`.

    Raises:
        CacheError: the name does not follow `NAME_PATTERN` (with `.h5` or `.p`).
    """
    name = os.path.basename(os.fspath(path))
    match = _NAME.match(name)
    if not match or "_" not in match.group("stem"):
        raise CacheError(
            f"Expected a cache file named {NAME_PATTERN} (or .p for a lab pickle), e.g. "
            f"vgg_cifar10_100_bottleneck_features_train.h5. Received: {name}. Pass the file "
            "extract_features wrote, under the name it gave it."
        )
    return CacheName(match.group("stem"), match.group("split"),
                     int(match.group("per_class") or 0), int(match.group("augment_copies") or 0),
                     match.group("suffix"))


def run_name(path):
    """The name of a run on cache `path`: its file name less the split and suffix.

    Args:
        path: e.g. `"caches/vgg_cifar10_100_bottleneck_features_train.h5"`.

    Returns:
        e.g. `"vgg_cifar10_100"` (`CacheName.run_name`); for a name off
        `NAME_PATTERN`, the file name less a `.h5` or `.p` suffix.
    """
    try:
        return parse_cache_filename(path).run_name
    except CacheError:
        stem, suffix = os.path.splitext(os.path.basename(os.fspath(path)))
        return stem if suffix in SUFFIXES else stem + suffix


def shard_filename(path, num_shards, shard_index):
    """`x_train.h5` -> `x_train-00001-of-00004.h5` for shard 1 of 4."""
    stem, ext = os.path.splitext(path)
    return f"{stem}-{shard_index:05d}-of-{num_shards:05d}{ext}"


def working_prefix(path):
    """The name prefix of what is written beside cache `path` while it is made: `.<name>.`.

    Temporary files (`.<name>.*.tmp`) and checkpoint folders
    (`.<name>.<fingerprint>.parts`) start with it.
    """
    return f".{os.path.basename(os.fspath(path))}."


def parts_folder(path, fingerprint):
    """The folder of checkpointed parts of the cache `path` while it is being extracted."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, f"{working_prefix(path)}{fingerprint[:16]}{_PARTS_SUFFIX}")


def is_parts_folder(entry, path):
    """True if the name `entry` is a checkpoint folder of cache `path` (of any settings)."""
    return entry.startswith(working_prefix(path)) and entry.endswith(_PARTS_SUFFIX)


def part_filename(folder, start, stop):
    """The checkpoint part of samples `[start, stop)` in a parts folder: `part-<start>-<stop>.h5`."""
    return os.path.join(folder, f"part-{start:010d}-{stop:010d}.h5")
