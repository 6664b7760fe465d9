"""The bottleneck cache: one HDF5 file per split, self-describing and validated.

This is the only module that imports h5py. A cache file holds:

* `features`: float32 `(num_samples, *feature_shape)`, chunked by rows.
* `labels`: int64 `(num_samples,)`, each in `[0, num_classes)`.
* `filenames`: UTF-8 strings `(num_samples,)`, the id of each sample's source.
* `class_names`: UTF-8 strings `(num_classes,)`; `labels` index into it.

and, as root attributes, `format` (`"bottleneck-cache"`), `format_version`, the
settings that produced the features (`CacheMetadata`), `complete`,
`fingerprint`, a SHA-256 of the settings, and the features' measured fidelity
to float32 (`FIDELITY_ATTRS`: `fidelity` is `"exact"` for float32 features,
`"cosine"` with the per-image cosine statistics for a lower precision; see
`features.precision.Fidelity`). Files are written to a temporary file
in the target's folder that replaces the target only once every row is written.
"""

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import tempfile
from typing import Optional

import h5py
import numpy as np

from bottleneck_cache.pipeline import checks

FORMAT_NAME = "bottleneck-cache"
FORMAT_VERSION = 2
SPLITS = ("train", "validation")
# What a training and a validation cache must share to be a pair (stage two checks these, and
# the dataset, and pairs caches of a batch by them).
PAIRED_ATTRIBUTES = ("network", "weights", "weights_sha256", "layer", "pooling", "input_size",
                     "preprocessing", "precision")


def pair_key(metadata):
    """What the other split's cache must share with `metadata`: dataset and `PAIRED_ATTRIBUTES`."""
    return tuple(getattr(metadata, name) for name in ("dataset", *PAIRED_ATTRIBUTES))
# Rows per HDF5 chunk aim at about 256 KiB (h5py's advice: 10 KiB to 1 MiB; smaller
# chunks keep small checkpoint parts small).
_CHUNK_BYTES = 1 << 18
_STRING = h5py.string_dtype(encoding="utf-8")
# Free space kept in reserve while writing: HDF5's chunk cache and metadata still to flush.
_SPACE_MARGIN = 8 << 20
# Root attributes recording how close the features are to float32 ones; not part of the
# fingerprint (a measurement, not a setting).
FIDELITY_ATTRS = ("fidelity", "fidelity_cosine_median", "fidelity_cosine_p1", "fidelity_cosine_min",
                  "fidelity_images")


class CacheError(ValueError):
    """A cache file is missing, malformed, incomplete or does not match."""


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


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _show(value):
    """`repr` of a value, with NumPy scalars shown as plain Python ones."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _attribute(value, kind, name, path):
    """Converts an HDF5 attribute value to `kind` (str, int or tuple of ints)."""
    value = _text(value)
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
            f"{'a list of integers' if kind is tuple else kind.__name__}. Received: {_show(value)}. "
            "Extract it again with extract_features --overwrite."
        )
    return value


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
    parts = [network.lower(), dataset]
    if per_class and split == "train":
        parts.append(str(per_class))
    if augment_copies and split == "train":
        parts.append(f"aug{augment_copies}")
    return "_".join(parts) + f"_bottleneck_features_{split}.h5"


def _chunk_rows(feature_shape):
    row_bytes = 4 * int(np.prod(feature_shape, dtype=np.int64))
    return max(1, min(4096, _CHUNK_BYTES // max(row_bytes, 1)))


class CacheWriter:
    """Appends rows to a cache file, atomically.

    Rows (features with their labels and filenames) go to a temporary file in
    the target's folder as they come; `commit()` marks it complete and renames
    it over `path`. If the writer is closed without a commit (an exception
    inside the `with` block), the temporary file is removed and `path` is left
    as it was.

    Example:

    ```python
    with CacheWriter(path, metadata, class_names, (512,)) as writer:
        for features, labels, filenames in batches:
            writer.append(features, labels, filenames)
        writer.skip(["bad.jpg"], ["truncated JPEG"])
        writer.commit()
    ```
    """

    def __init__(self, path, metadata, class_names, feature_shape, samples=None, fidelity=None):
        """Opens the temporary file and writes the header.

        Args:
            path: the final cache path.
            metadata: a `CacheMetadata`.
            class_names: `(num_classes,)` class names.
            feature_shape: the shape of one sample's features.
            samples: for a part file (a checkpoint or a shard), the
                `(start, stop, total)` range of the split's samples it covers.
            fidelity: a dict of `FIDELITY_ATTRS` to write as root attributes.
        """
        self._samples = samples
        self._fidelity = dict(fidelity or {})
        self.path = os.fspath(path)
        self.num_rows = 0
        self.num_skipped = 0
        self._num_classes = len(class_names)
        self._committed = False
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, self._tmp_path = tempfile.mkstemp(
            prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=folder
        )
        os.close(fd)
        try:
            # mkstemp creates the file 0600; give the cache the mode a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp_path, 0o666 & ~umask)
            self._file = h5py.File(self._tmp_path, "w")
            self._write_header(metadata, class_names, tuple(feature_shape))
        except BaseException:
            self._discard()
            raise

    def _write_header(self, metadata, class_names, feature_shape):
        f = self._file
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        for key, value in metadata.to_attrs().items():
            f.attrs[key] = value
        f.attrs["fingerprint"] = metadata.fingerprint()
        f.attrs["complete"] = False
        for key, value in self._fidelity.items():
            f.attrs[key] = value
        if self._samples is not None:
            f.attrs["part_samples"] = np.asarray(self._samples, dtype=np.int64)
        rows = _chunk_rows(feature_shape)
        # Fletcher-32 checksums per chunk: a flipped bit in the numbers is a read error,
        # not silently different features.
        f.create_dataset("features", shape=(0, *feature_shape), dtype=np.float32,
                         chunks=(rows, *feature_shape), maxshape=(None, *feature_shape),
                         fletcher32=True)
        f.create_dataset("labels", shape=(0,), dtype=np.int64, chunks=(4096,), maxshape=(None,),
                         fletcher32=True)
        f.create_dataset("views", shape=(0,), dtype=np.int16, chunks=(4096,), maxshape=(None,),
                         fletcher32=True)
        for name in ("filenames", "skipped_filenames", "skipped_reasons"):
            f.create_dataset(name, shape=(0,), dtype=_STRING, chunks=(1024,), maxshape=(None,))
        f.create_dataset(
            "class_names", data=np.asarray(list(class_names), dtype=object), dtype=_STRING
        )

    def _extend(self, name, values):
        dataset = self._file[name]
        start = dataset.shape[0]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values

    def append(self, features, labels, filenames, views=None):
        """Appends rows: each sample's features, label and filename together.

        Args:
            features: `(num_rows, *feature_shape)` array of finite values.
            labels: `(num_rows,)` integer labels in `[0, num_classes)`.
            filenames: `(num_rows,)` sample ids.
            views: `(num_rows,)`: 0 for an image itself, `k` for its `k`-th
                augmented view; None for all 0.

        Raises:
            CacheError: lengths that differ, a label out of range, or a NaN or
                infinite feature.
        """
        features = np.asarray(features, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64)
        filenames = list(filenames)
        views = np.zeros(len(features), np.int16) if views is None else np.asarray(views, np.int16)
        if not len(features) == len(labels) == len(filenames) == len(views):
            raise CacheError(
                f"Expected one label, filename and view per feature row for {self.path}. "
                f"Received: {len(features)} rows, {len(labels)} labels, {len(filenames)} "
                f"filenames, {len(views)} views."
            )
        _check_labels(labels, self._num_classes, self.path)
        finite = np.isfinite(features.reshape(len(features), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise CacheError(
                f"The network produced a non-finite feature (NaN or inf) for {filenames[row]}. "
                f"Expected finite values; nothing was written to {self.path}. Check the weights "
                "file, or use --pooling=avg."
            )
        self._check_space(features.nbytes + 64 * len(filenames))
        self._extend("features", features)
        self._extend("labels", labels)
        self._extend("views", views)
        self._extend("filenames", np.asarray(filenames, dtype=object))
        self.num_rows += len(features)

    def _check_space(self, nbytes):
        """Raises `OSError(ENOSPC)` before a write that would fill the file system.

        HDF5 does not recover from a full disk in the middle of a write (h5py
        can crash the process later), so the writer stops first, leaving room
        for what HDF5 still holds in memory.
        """
        stat = os.statvfs(os.path.dirname(os.path.abspath(self._tmp_path)))
        free = stat.f_bavail * stat.f_frsize
        if free < nbytes + _SPACE_MARGIN:
            raise OSError(
                errno.ENOSPC,
                f"No space left to write {self.path}: {free // 1024} KiB free, about "
                f"{(nbytes + _SPACE_MARGIN) // 1024} KiB needed for the next rows. Free space or "
                "choose another --output_dir, then run the same command again: an older cache "
                "there is intact, and finished checkpoints are kept.",
            )

    def skip(self, filenames, reasons):
        """Records samples that were left out, and why (e.g. an image that cannot be decoded).

        Args:
            filenames: `(num_skipped,)` sample ids.
            reasons: `(num_skipped,)` one line each.
        """
        self._extend("skipped_filenames", np.asarray(list(filenames), dtype=object))
        self._extend("skipped_reasons", np.asarray(list(reasons), dtype=object))
        self.num_skipped += len(filenames)

    def commit(self):
        """Marks the file complete, flushes it to disk and moves it over the target path."""
        self._file.attrs["complete"] = True
        self._file.close()
        with open(self._tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp_path, self.path)
        self._committed = True
        _fsync_folder(os.path.dirname(os.path.abspath(self.path)))

    def _discard(self):
        file = getattr(self, "_file", None)
        if file is not None and file.id.valid:
            file.close()
        if os.path.exists(self._tmp_path):
            os.remove(self._tmp_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if not self._committed:
            self._discard()
        return False


def _fsync_folder(folder):
    """Makes a rename in `folder` durable (where the OS allows opening folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_labels(labels, num_classes, path):
    if labels.ndim != 1:
        raise CacheError(f"Expected labels of shape (num_samples,) in {path}. Received: {labels.shape}.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise CacheError(
            f"Expected labels in [0, {num_classes}) (one per class name) in {path}. "
            f"Received: label {bad}. The file is corrupt or was not written by "
            "extract_features; extract it again with --overwrite."
        )


def parts_folder(path, fingerprint):
    """The folder of checkpointed parts of the cache `path` while it is being extracted."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{fingerprint[:16]}.parts")


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        folder, name = os.path.split(os.path.abspath(path))
        entries = os.listdir(folder) if os.path.isdir(folder) else []
        if any(e.startswith(f".{name}.") and e.endswith(".parts") for e in entries):
            raise CacheError(
                f"Cache file {path} is not finished: its extraction is running or was "
                "interrupted. Run the same extract_features command again to resume it."
            )
        raise CacheError(
            f"Cache file {path} does not exist. Expected a file written by extract_features, "
            "e.g. <network>_<dataset>_bottleneck_features_train.h5."
        )
    try:
        # A finished cache is never written again, so readers need no file lock (which
        # some network file systems do not support).
        return h5py.File(path, "r", locking=False)
    except OSError as error:
        raise CacheError(
            f"{path} is not a readable HDF5 file ({error}). It may be truncated or corrupt; "
            "extract it again with extract_features --overwrite."
        ) from None


def _check_header(f, path):
    name = _text(f.attrs.get("format"))
    if name != FORMAT_NAME:
        raise CacheError(
            f"{path} is not a bottleneck cache: expected attribute format={FORMAT_NAME!r}. "
            f"Received: format={name!r}. Write caches with extract_features."
        )
    version = f.attrs.get("format_version")
    if not (isinstance(version, (int, np.integer)) and version == FORMAT_VERSION):
        raise CacheError(
            f"{path} has cache format version {_show(version)}; this version of bottleneck-cache "
            f"reads version {FORMAT_VERSION}. Extract it again with extract_features --overwrite."
        )
    if not bool(f.attrs.get("complete", False)):
        raise CacheError(
            f"{path} is incomplete: its extraction did not finish. Run the same "
            "extract_features command again to finish it."
        )
    for key in ("features", "labels", "views", "filenames", "class_names", "skipped_filenames",
                "skipped_reasons"):
        if not isinstance(f.get(key), h5py.Dataset):
            raise CacheError(
                f"{path} is not a valid bottleneck cache: dataset `{key}` is missing. "
                "Extract it again with extract_features --overwrite."
            )
    metadata = CacheMetadata.from_attrs(f.attrs, path)
    stored = _text(f.attrs.get("fingerprint"))
    if stored != metadata.fingerprint():
        raise CacheError(
            f"{path} has a fingerprint that does not match its attributes (stored {stored}, "
            f"computed {metadata.fingerprint()}): its metadata was edited or corrupted. "
            "Extract it again with extract_features --overwrite."
        )
    return metadata


def _corrupt(path, what):
    return CacheError(
        f"{path} is corrupt: expected {what}. Extract it again with extract_features --overwrite."
    )


def _read_rows(f, path):
    """Reads and checks everything but the features' values.

    Returns:
        `(labels, filenames, class_names, skipped, views)`.
    """
    features, labels = f["features"], f["labels"]
    if features.dtype != np.float32 or features.ndim < 2:
        raise _corrupt(path, f"float32 `features` of shape (num_samples, *feature_shape); "
                             f"received {features.dtype} {features.shape}")
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise _corrupt(path, f"integer `labels` of shape (num_samples,); received "
                             f"{labels.dtype} {labels.shape}")
    if f["class_names"].ndim != 1 or f["filenames"].ndim != 1:
        raise _corrupt(path, "1-D `class_names` and `filenames`")
    class_names = tuple(str(_text(v)) for v in f["class_names"][()])
    if len(set(class_names)) != len(class_names):
        raise _corrupt(path, f"unique class names; received {list(class_names)}")
    labels = _read_checked(labels, (), path).astype(np.int64)
    filenames = tuple(str(_text(v)) for v in f["filenames"][()])
    if f["views"].dtype.kind not in "iu" or f["views"].ndim != 1:
        raise _corrupt(path, f"integer `views` of shape (num_samples,); received "
                             f"{f['views'].dtype} {f['views'].shape}")
    views = _read_checked(f["views"], (), path).astype(np.int16)
    lengths = {"features": features.shape[0], "labels": len(labels), "views": len(views),
               "filenames": len(filenames)}
    if len(set(lengths.values())) != 1:
        raise _corrupt(path, f"`features`, `labels` and `filenames` to have one row per sample; "
                             f"received lengths {lengths}")
    _check_labels(labels, len(class_names), path)
    if f["skipped_reasons"].shape != f["skipped_filenames"].shape:
        raise _corrupt(path, "one entry of `skipped_reasons` per entry of `skipped_filenames`")
    skipped = tuple(zip((str(_text(v)) for v in f["skipped_filenames"][()]),
                        (str(_text(v)) for v in f["skipped_reasons"][()])))
    return labels, filenames, class_names, skipped, views


def _read_checked(dataset, selection, path):
    """Reads `dataset[selection]`; a failed checksum or read is a `CacheError`."""
    try:
        return dataset[selection]
    except OSError as error:
        raise CacheError(
            f"{path} is corrupt: reading `{dataset.name.lstrip('/')}` failed ({error}); its "
            "checksum or storage is damaged. Extract it again with extract_features --overwrite."
        ) from None


def _feature_blocks(dataset, filenames, path):
    """Yields `(start, block)` over the features, about 16 MiB at a time, checking values."""
    rows = max(1, (16 << 20) // max(4 * int(np.prod(dataset.shape[1:], dtype=np.int64)), 1))
    for start in range(0, dataset.shape[0], rows):
        block = _read_checked(dataset, slice(start, start + rows), path)
        finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise CacheError(
                f"{path} holds a non-finite feature (NaN or inf) in row {row} "
                f"({filenames[row]}). Expected finite values; extract it again with "
                "extract_features --overwrite."
            )
        yield start, block


def _is_lab_pickle(path):
    """True for a Udacity lab bottleneck pickle (`.p`), read by `pipeline.lab_pickles`."""
    return os.fspath(path).lower().endswith(".p")


def read_metadata(path):
    """Reads and checks a cache file's header, without reading its rows.

    A Udacity lab pickle (`.p`) is read whole by `pipeline.lab_pickles`.

    Args:
        path: a cache file, or a lab pickle.

    Returns:
        `(metadata, fingerprint)`.

    Raises:
        CacheError: the file is missing, not a cache, of another format
            version, incomplete, or its attributes do not match its fingerprint.
    """
    if _is_lab_pickle(path):
        from bottleneck_cache.pipeline import lab_pickles  # pylint: disable=g-import-not-at-top

        metadata = lab_pickles.read_lab_pickle(path).metadata
        return metadata, metadata.fingerprint()
    with _open(path) as f:
        metadata = _check_header(f, path)
        return metadata, metadata.fingerprint()


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


# The first bytes of every HDF5 file (the format's signature, at offset 0 for files h5py writes).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5_file(path):
    """True if `path` is a regular file starting with HDF5's signature (a cache, even a damaged one)."""
    try:
        with open(path, "rb") as f:
            return os.path.isfile(path) and f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    except OSError:
        return False


def verify_cache(path):
    """Runs every check of `read_cache` without keeping the features in memory.

    Args:
        path: a cache file.

    Returns:
        A `CacheInfo`.

    Raises:
        CacheError: as `read_cache`.
    """
    path = os.fspath(path)
    with _open(path) as f:
        metadata = _check_header(f, path)
        _, filenames, _, skipped, _ = _read_rows(f, path)
        for _ in _feature_blocks(f["features"], filenames, path):
            pass
        samples = _part_samples(f, path) if "part_samples" in f.attrs else None
    return CacheInfo(metadata, metadata.fingerprint(), len(filenames), len(skipped), samples)


def read_cache(path):
    """Reads a cache file into memory, validating it on the way.

    A Udacity lab pickle (`.p`) is read by `pipeline.lab_pickles.read_lab_pickle`.

    Args:
        path: a cache file, or a lab pickle.

    Returns:
        A `Cache`.

    Raises:
        CacheError: the file fails any check of `read_metadata`; a dataset
            has the wrong type, dtype or shape; the datasets disagree in length;
            class names repeat; a label is out of range; or a feature is NaN or
            infinite.
    """
    path = os.fspath(path)
    if _is_lab_pickle(path):
        from bottleneck_cache.pipeline import lab_pickles  # pylint: disable=g-import-not-at-top

        return lab_pickles.read_lab_pickle(path)
    with _open(path) as f:
        metadata = _check_header(f, path)
        labels, filenames, class_names, skipped, views = _read_rows(f, path)
        dataset = f["features"]
        features = np.empty(dataset.shape, dtype=np.float32)
        for start, block in _feature_blocks(dataset, filenames, path):
            features[start : start + len(block)] = block
    return Cache(
        path=path,
        metadata=metadata,
        features=features,
        labels=labels,
        filenames=filenames,
        class_names=class_names,
        skipped=skipped,
        fingerprint=metadata.fingerprint(),
        views=views,
    )


def _part_samples(f, path):
    """The `(start, stop, total)` sample range of an open part file.

    Raises:
        CacheError: the file is a whole cache, not a part.
    """
    samples = f.attrs.get("part_samples")
    if samples is None or np.shape(samples) != (3,):
        raise CacheError(
            f"{path} is a whole cache, not a part: expected attribute `part_samples` = "
            "(start, stop, total). Merge only the part files extract_features wrote."
        )
    return tuple(int(v) for v in samples)


def read_part_header(path):
    """Reads and checks a part file's header: `(metadata, (start, stop, total))`.

    Raises:
        CacheError: the file is not a valid cache, or not a part.
    """
    with _open(path) as f:
        return _check_header(f, path), _part_samples(f, path)


def _check_coverage(ranges, start, stop, total):
    """Raises `CacheError` unless `ranges` tile `[start, stop)` of `total` samples exactly."""
    position = start
    for (first, last, size), path in ranges:
        if size != total:
            raise CacheError(
                f"{path} is a part of a split of {size} samples. Expected parts of one split of "
                f"{total} samples; it comes from another extraction."
            )
        if first != position:
            problem = (f"samples [{position}, {first}) are missing" if first > position else
                       f"samples [{first}, {min(position, last)}) appear twice")
            raise CacheError(
                f"Expected parts covering samples [{start}, {stop}) exactly once. Received: "
                f"{path} starts at sample {first}, so {problem}. Add the missing part (run that "
                "shard again) or remove the duplicate."
            )
        position = last
    if position != stop:
        raise CacheError(
            f"Expected parts covering samples [{start}, {stop}) exactly once. Received: parts end "
            f"at sample {position}, so samples [{position}, {stop}) are missing. Run the missing "
            "shard, then merge again."
        )


def read_fidelity(path):
    """The `FIDELITY_ATTRS` a cache file records, as a dict (empty for older caches)."""
    with _open(path) as f:
        values = {key: _text(f.attrs[key]) for key in FIDELITY_ATTRS if key in f.attrs}
    return {key: value.item() if isinstance(value, np.generic) else value
            for key, value in values.items()}


def merge_parts(part_paths, path, metadata, samples, as_part=False, fidelity=None):
    """Concatenates part files, in sample order, into one cache file, atomically.

    Args:
        part_paths: finished part files, in any order.
        path: the cache to write (itself a part when `samples` is not the whole split).
        metadata: the settings every part must have been made with.
        samples: `(start, stop, total)`: the range the parts must tile, without
            gaps or overlaps.
        as_part: write a part even when `samples` is the whole split (a shard
            file, which `--merge` expects to be a part).
        fidelity: a dict of `FIDELITY_ATTRS` for the file; None copies the
            first part's.

    Returns:
        A `CacheInfo` of the written file.

    Raises:
        CacheError: a part is invalid, made with other settings, or the parts
            leave a gap, overlap, or belong to a split of another size.
    """
    ranges = []
    for part in part_paths:
        part_metadata, part_range = read_part_header(part)
        if part_metadata.fingerprint() != metadata.fingerprint():
            differences = "; ".join(part_metadata.differences(metadata))
            raise CacheError(
                f"{part} was made with other settings ({differences} (part != expected)). "
                "Expected every part from the same extract_features flags."
            )
        ranges.append((part_range, part))
    ranges.sort()
    start, stop, total = samples
    _check_coverage(ranges, start, stop, total)
    if not ranges:
        raise CacheError(f"Expected at least one part to merge into {path}. Received: none.")
    whole = (start, stop) == (0, total) and not as_part
    with contextlib.ExitStack() as stack:
        writer = None
        for _, part in ranges:
            with _open(part) as f:
                _check_header(f, part)
                labels, filenames, names, skipped, views = _read_rows(f, part)
                if writer is None:
                    if fidelity is None:
                        fidelity = {key: _text(f.attrs[key]) for key in FIDELITY_ATTRS
                                    if key in f.attrs}
                    writer = stack.enter_context(CacheWriter(
                        path, metadata, names, f["features"].shape[1:],
                        samples=None if whole else samples, fidelity=fidelity))
                    first = (names, f["features"].shape[1:])
                elif (names, f["features"].shape[1:]) != first:
                    raise _corrupt(part, f"the class names and feature shape of {ranges[0][1]}")
                for offset, block in _feature_blocks(f["features"], filenames, part):
                    end = offset + len(block)
                    writer.append(block, labels[offset:end], filenames[offset:end],
                                  views[offset:end])
                if skipped:
                    writer.skip(*zip(*skipped))
        writer.commit()
    return CacheInfo(metadata, metadata.fingerprint(), writer.num_rows, writer.num_skipped)
