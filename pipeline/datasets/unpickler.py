"""Reading pickles: refused without `allow_pickle`, or read by a data-only unpickler.

Unpickling can run code. `load_data_pickle` (and `unpickle` without `allow_pickle`) use an unpickler
that accepts only dicts, lists, bytes and NumPy arrays and refuses every other global before it is
called, so no code stored in the file can run.
"""

import pickle

from bottleneck_cache.pipeline.datasets import errors


PICKLE_HINT = (
    "Loading a pickle runs code stored in the file. Pass --allow_pickle (allow_pickle=True) only for "
    "files you trust, or convert the data to a .npz file or a folder of images."
)


def require_pickle(allow_pickle, path):
    """Refuses to load the pickled dataset at `path` unless `allow_pickle`."""
    if not allow_pickle:
        raise errors.DatasetError(
            f"Expected allow_pickle=True to load the pickled dataset at '{path}'. Received: allow_pickle=False. "
            f"{PICKLE_HINT}"
        )


# The only globals a pickle of plain data (dicts, lists, bytes, NumPy arrays) needs.
_DATA_ONLY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global other than plain data: loading it could run code."""


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays; refuses every other global, so runs no code."""

    def find_class(self, module, name):
        if (module, name) in _DATA_ONLY_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"it refers to {module}.{name}, which is not plain data")


def unpickle(path, encoding, allow_pickle=False):
    """Loads a dataset's pickle: any pickle with `allow_pickle`, else plain data and NumPy arrays only.

    Args:
        path: the pickle file.
        encoding: how to decode Python 2 strings ("bytes" for CIFAR-10, "latin1" for the lab's pickles).
        allow_pickle: use the plain unpickler, which can run code stored in the file.

    Raises:
        DatasetError: the file cannot be read or unpickled, or (without `allow_pickle`) names a global
            that is not plain data; the message says why.
    """
    try:
        with open(path, "rb") as f:
            if allow_pickle:
                return pickle.load(f, encoding=encoding)
            return _DataOnlyUnpickler(f, encoding=encoding).load()
    except Exception as error:  # Unpickling can raise almost anything.
        hint = "" if allow_pickle else f" {PICKLE_HINT}"
        raise errors.DatasetError(
            f"Expected '{path}' to be a readable pickle of plain data. Received: "
            f"{type(error).__name__}: {str(error).rstrip('.')}.{hint}"
        ) from error


def load_data_pickle(source, encoding="latin1"):
    """Loads a pickle of plain data and NumPy arrays only; no code stored in it can run.

    Any global the pickle names other than NumPy's array and dtype constructors
    is refused before it is called (`UnsafePickleError` naming it).

    Args:
        source: a path, or a binary file object positioned at the pickle.
        encoding: how to decode Python 2 strings (`"latin1"` keeps NumPy data intact).

    Raises:
        UnsafePickleError: the pickle refers to something other than plain data.
        Exception: whatever a truncated or malformed pickle raises.
    """
    if hasattr(source, "read"):
        return _DataOnlyUnpickler(source, encoding=encoding).load()
    with open(source, "rb") as f:
        return _DataOnlyUnpickler(f, encoding=encoding).load()


def pickled_item(mapping, key, path):
    """Returns `mapping[key]`, accepting `str` or `bytes` keys (pickles from Python 2 have bytes).

    Raises:
        DatasetError: `mapping` is not a dict holding `key`; the message names `path`.
    """
    if isinstance(mapping, dict):
        for candidate in (key, key.encode()):
            if candidate in mapping:
                return mapping[candidate]
    keys = sorted(str(k) for k in mapping) if isinstance(mapping, dict) else type(mapping).__name__
    raise errors.DatasetError(f"Expected '{path}' to hold a dict with key '{key}'. Received: {keys}.")
