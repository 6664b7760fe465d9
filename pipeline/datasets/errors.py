"""The error every dataset problem raises, and the helpers its messages share."""

import os


MAX_SHOWN = 5  # names quoted in one message


class DatasetError(ValueError):
    """A dataset is missing, has an unexpected layout or holds invalid data."""


def check_exists(path):
    """Refuses a dataset `path` that does not exist."""
    if not os.path.exists(path):
        raise DatasetError(
            f"Expected an existing dataset file or folder. Received: '{path}', which does not exist. "
            f"Check the path, or omit it to use the bundled digits."
        )


def shown(path):
    """`path` printable and storable as UTF-8: undecodable bytes of a file name become `\\xNN`."""
    return os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
