"""`CacheWriter`: appends rows to a cache file written to a temporary file and renamed on success."""

import errno
import os
import tempfile

import h5py
import numpy as np

from bottleneck_cache.pipeline.cache import schema

# Rows per HDF5 chunk aim at about 256 KiB (h5py's advice: 10 KiB to 1 MiB; smaller
# chunks keep small checkpoint parts small).
_CHUNK_BYTES = 1 << 18
_STRING = h5py.string_dtype(encoding="utf-8")
# Free space kept in reserve while writing: HDF5's chunk cache and metadata still to flush.
_SPACE_MARGIN = 8 << 20


def _chunk_rows(feature_shape):
    """Rows per chunk of `features` for rows of `feature_shape` (about `_CHUNK_BYTES` a chunk)."""
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
            prefix=schema.working_prefix(self.path), suffix=".tmp", dir=folder
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
        """Writes the root attributes and creates every dataset, empty and resizable."""
        f = self._file
        f.attrs["format"] = schema.FORMAT_NAME
        f.attrs["format_version"] = schema.FORMAT_VERSION
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
        """Appends `(n, ...)` `values` to the resizable dataset `name`."""
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
            raise schema.CacheError(
                f"Expected one label, filename and view per feature row for {self.path}. "
                f"Received: {len(features)} rows, {len(labels)} labels, {len(filenames)} "
                f"filenames, {len(views)} views."
            )
        schema.check_labels(labels, self._num_classes, self.path)
        finite = np.isfinite(features.reshape(len(features), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise schema.CacheError(
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
        """Closes and removes the temporary file (the target is left as it was).

        The file is removed even when closing it fails (an interrupt can arrive while a
        writer thread still holds the file), so an interrupted run leaves no `.tmp` behind.
        """
        file = getattr(self, "_file", None)
        try:
            if file is not None and file.id.valid:
                file.close()
        finally:
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
