"""What the command-line entry points share: quiet start-up and clean errors."""

import os
import sys

from absl import logging


def quiet_tensorflow():
    """Hides TensorFlow's C++ start-up chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def call(command, function, **kwargs):
    """Calls `function(**kwargs)`, turning a bad-input error into one message and exit 1.

    Args:
        command: the command's name, for the message.
        function: the library function the command runs.
        **kwargs: its arguments.

    Returns:
        What `function` returned.

    Raises:
        SystemExit: `function` raised `ValueError` (bad flags, dataset, network
            or cache) or `OSError` (e.g. a full disk); nothing was left half-written.
    """
    try:
        return function(**kwargs)
    except (ValueError, OSError) as error:
        logging.debug("%s failed", command, exc_info=True)
        print(f"{command}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
