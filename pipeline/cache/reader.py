"""The validating readers: `read_cache`, `read_metadata`, `verify_cache`, `read_fidelity`.

Every read checks the format name and version, `complete`, that every dataset
and attribute is there with the right type, dtype and rank, the fingerprint,
one row per sample, unique class names, labels in range and finite features
(streamed in ~16 MiB blocks); a failed check is a `CacheError` that says how to
fix it. A Udacity lab pickle (`.p`) is handed to `pipeline.lab_pickles`. The
lower-level steps (`open_cache`, `check_header`, `read_rows`, `feature_blocks`,
`part_samples`, `fidelity_attrs`) are public for `parts.merge_parts`.
"""

import os

import h5py
import numpy as np

from bottleneck_cache.pipeline.cache import schema

_DATASETS = ("features", "labels", "views", "filenames", "class_names", "skipped_filenames",
             "skipped_reasons")
# The first bytes of every HDF5 file (the format's signature, at offset 0 for files h5py writes).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Features are checked and copied this many bytes at a time.
_BLOCK_BYTES = 16 << 20


def open_cache(path):
    """Opens a cache file for reading.

    Args:
        path: a cache file.

    Returns:
        An open, read-only `h5py.File` (use it as a context manager).

    Raises:
        CacheError: the file does not exist (saying so when its extraction is
            unfinished) or is not readable HDF5.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        entries = os.listdir(folder) if os.path.isdir(folder) else []
        if any(schema.is_parts_folder(entry, path) for entry in entries):
            raise schema.CacheError(
                f"Cache file {path} is not finished: its extraction is running or was "
                "interrupted. Run the same extract_features command again to resume it."
            )
        raise schema.CacheError(
            f"Cache file {path} does not exist. Expected a file written by extract_features, "
            "e.g. <network>_<dataset>_bottleneck_features_train.h5."
        )
    try:
        # A finished cache is never written again, so readers need no file lock (which
        # some network file systems do not support).
        return h5py.File(path, "r", locking=False)
    except OSError as error:
        raise schema.CacheError(
            f"{path} is not a readable HDF5 file ({error}). It may be truncated or corrupt; "
            "extract it again with extract_features --overwrite."
        ) from None


def check_header(f, path):
    """Checks an open file's format, version, completeness, datasets and fingerprint.

    Args:
        f: an open `h5py.File`.
        path: its path, for messages.

    Returns:
        Its `CacheMetadata`.

    Raises:
        CacheError: any check fails.
    """
    name = schema.decode_text(f.attrs.get("format"))
    if name != schema.FORMAT_NAME:
        raise schema.CacheError(
            f"{path} is not a bottleneck cache: expected attribute format={schema.FORMAT_NAME!r}. "
            f"Received: format={name!r}. Write caches with extract_features."
        )
    version = f.attrs.get("format_version")
    if not (isinstance(version, (int, np.integer)) and version == schema.FORMAT_VERSION):
        raise schema.CacheError(
            f"{path} has cache format version {schema.show_value(version)}; this version of "
            f"bottleneck-cache reads version {schema.FORMAT_VERSION}. Extract it again with "
            "extract_features --overwrite."
        )
    if not bool(f.attrs.get("complete", False)):
        raise schema.CacheError(
            f"{path} is incomplete: its extraction did not finish. Run the same "
            "extract_features command again to finish it."
        )
    for key in _DATASETS:
        if not isinstance(f.get(key), h5py.Dataset):
            raise schema.CacheError(
                f"{path} is not a valid bottleneck cache: dataset `{key}` is missing. "
                "Extract it again with extract_features --overwrite."
            )
    metadata = schema.CacheMetadata.from_attrs(f.attrs, path)
    stored = schema.decode_text(f.attrs.get("fingerprint"))
    if stored != metadata.fingerprint():
        raise schema.CacheError(
            f"{path} has a fingerprint that does not match its attributes (stored {stored}, "
            f"computed {metadata.fingerprint()}): its metadata was edited or corrupted. "
            "Extract it again with extract_features --overwrite."
        )
    return metadata


def corrupt(path, what):
    """The `CacheError` for a file whose content is not `what` was expected."""
    return schema.CacheError(
        f"{path} is corrupt: expected {what}. Extract it again with extract_features --overwrite."
    )


def _strings(dataset):
    """A 1-D string dataset as a tuple of `str`."""
    return tuple(str(schema.decode_text(v)) for v in dataset[()])


def read_rows(f, path):
    """Reads and checks everything but the features' values.

    Args:
        f: an open `h5py.File` whose header `check_header` accepted.
        path: its path, for messages.

    Returns:
        `(labels, filenames, class_names, skipped, views)`: labels int64
        `(num_samples,)`, filenames `(num_samples,)`, class names
        `(num_classes,)`, `(filename, reason)` pairs, views int16 `(num_samples,)`.

    Raises:
        CacheError: a dataset of the wrong dtype or rank, datasets of
            different lengths, repeated class names or a label out of range.
    """
    features, labels = f["features"], f["labels"]
    if features.dtype != np.float32 or features.ndim < 2:
        raise corrupt(path, f"float32 `features` of shape (num_samples, *feature_shape); "
                            f"received {features.dtype} {features.shape}")
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise corrupt(path, f"integer `labels` of shape (num_samples,); received "
                            f"{labels.dtype} {labels.shape}")
    if f["class_names"].ndim != 1 or f["filenames"].ndim != 1:
        raise corrupt(path, "1-D `class_names` and `filenames`")
    class_names = _strings(f["class_names"])
    if len(set(class_names)) != len(class_names):
        raise corrupt(path, f"unique class names; received {list(class_names)}")
    labels = _read_checked(labels, (), path).astype(np.int64)
    filenames = _strings(f["filenames"])
    if f["views"].dtype.kind not in "iu" or f["views"].ndim != 1:
        raise corrupt(path, f"integer `views` of shape (num_samples,); received "
                            f"{f['views'].dtype} {f['views'].shape}")
    views = _read_checked(f["views"], (), path).astype(np.int16)
    lengths = {"features": features.shape[0], "labels": len(labels), "views": len(views),
               "filenames": len(filenames)}
    if len(set(lengths.values())) != 1:
        raise corrupt(path, f"`features`, `labels` and `filenames` to have one row per sample; "
                            f"received lengths {lengths}")
    schema.check_labels(labels, len(class_names), path)
    if f["skipped_reasons"].shape != f["skipped_filenames"].shape:
        raise corrupt(path, "one entry of `skipped_reasons` per entry of `skipped_filenames`")
    skipped = tuple(zip(_strings(f["skipped_filenames"]), _strings(f["skipped_reasons"])))
    return labels, filenames, class_names, skipped, views


def _read_checked(dataset, selection, path):
    """Reads `dataset[selection]`; a failed checksum or read is a `CacheError`."""
    try:
        return dataset[selection]
    except OSError as error:
        raise schema.CacheError(
            f"{path} is corrupt: reading `{dataset.name.lstrip('/')}` failed ({error}); its "
            "checksum or storage is damaged. Extract it again with extract_features --overwrite."
        ) from None


def feature_blocks(dataset, filenames, path):
    """Yields the features a block at a time (about 16 MiB), checking every value.

    Args:
        dataset: the `features` dataset, `(num_samples, *feature_shape)`.
        filenames: `(num_samples,)` sample ids, for messages.
        path: the file, for messages.

    Yields:
        `(start, block)`: float32 `(rows, *feature_shape)` starting at row `start`.

    Raises:
        CacheError: a block fails its checksum, or holds a NaN or infinity.
    """
    rows = max(1, _BLOCK_BYTES // max(4 * int(np.prod(dataset.shape[1:], dtype=np.int64)), 1))
    for start in range(0, dataset.shape[0], rows):
        block = _read_checked(dataset, slice(start, start + rows), path)
        finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise schema.CacheError(
                f"{path} holds a non-finite feature (NaN or inf) in row {row} "
                f"({filenames[row]}). Expected finite values; extract it again with "
                "extract_features --overwrite."
            )
        yield start, block


def part_samples(f, path):
    """The `(start, stop, total)` sample range of an open part file.

    Raises:
        CacheError: the file is a whole cache, not a part.
    """
    samples = f.attrs.get("part_samples")
    if samples is None or np.shape(samples) != (3,):
        raise schema.CacheError(
            f"{path} is a whole cache, not a part: expected attribute `part_samples` = "
            "(start, stop, total). Merge only the part files extract_features wrote."
        )
    return tuple(int(v) for v in samples)


def fidelity_attrs(f):
    """The `FIDELITY_ATTRS` an open file records, as stored (strings decoded)."""
    return {key: schema.decode_text(f.attrs[key]) for key in schema.FIDELITY_ATTRS if key in f.attrs}


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
    with open_cache(path) as f:
        metadata = check_header(f, path)
        return metadata, metadata.fingerprint()


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
    with open_cache(path) as f:
        metadata = check_header(f, path)
        _, filenames, _, skipped, _ = read_rows(f, path)
        for _ in feature_blocks(f["features"], filenames, path):
            pass
        samples = part_samples(f, path) if "part_samples" in f.attrs else None
    return schema.CacheInfo(metadata, metadata.fingerprint(), len(filenames), len(skipped), samples)


def read_cache(path):
    """Reads a cache file into memory, validating it on the way.

    A Udacity lab pickle (`.p`) is read by `pipeline.lab_pickles.read_lab_pickle`.

    Args:
        path: a cache file, or a lab pickle.

    Returns:
        A `Cache`: features float32 `(num_samples, *feature_shape)`, labels
        int64 `(num_samples,)`, and the rest as `read_rows` returns it.

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
    with open_cache(path) as f:
        metadata = check_header(f, path)
        labels, filenames, class_names, skipped, views = read_rows(f, path)
        dataset = f["features"]
        features = np.empty(dataset.shape, dtype=np.float32)
        for start, block in feature_blocks(dataset, filenames, path):
            features[start : start + len(block)] = block
    return schema.Cache(
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


def read_fidelity(path):
    """The `FIDELITY_ATTRS` a cache file records, as a dict of Python values (empty for older caches)."""
    with open_cache(path) as f:
        values = fidelity_attrs(f)
    return {key: value.item() if isinstance(value, np.generic) else value
            for key, value in values.items()}
