"""Argument checks with one message form, as scikit-learn's `check_scalar` does for its estimators.

Every check raises `ValueError` (or the given subclass) reading
"Expected <name> <what it may be>. Received: <name>=<value>." and, where a fix
is worth saying, a sentence more. Library functions check their arguments
with these at their edge and then trust them.
"""

import math


def check_scalar(value, name, min_value=None, max_value=None, include_min=True,
                 include_max=True, finite=False, qualifier="", fix="", error=ValueError):
    """Refuses a number outside `[min_value, max_value]` (bounds open or closed as asked).

    Args:
        value: the number to check.
        name: its name in the message, e.g. `"batch_size"`.
        min_value, max_value: the bounds, or None for none.
        include_min, include_max: whether each bound itself is allowed.
        finite: also refuse nan and infinities.
        qualifier: words after the condition, e.g. `"(or unset for all)"`.
        fix: a sentence after the message: how to fix it.
        error: the `ValueError` subclass to raise.

    Raises:
        error: `value` is out of range (or not finite, with `finite`).
    """
    low_ok = min_value is None or (value >= min_value if include_min else value > min_value)
    high_ok = max_value is None or (value <= max_value if include_max else value < max_value)
    if low_ok and high_ok and not (finite and not math.isfinite(value)):
        return value
    if min_value is not None and max_value is not None:
        condition = (f"in {'[' if include_min else '('}{min_value}, {max_value}"
                     f"{']' if include_max else ')'}")
    elif min_value is not None:
        condition = f"{'>=' if include_min else '>'} {min_value}"
    else:
        condition = f"{'<=' if include_max else '<'} {max_value}"
    if finite:
        condition = f"to be a finite number {condition}"
    qualifier = f" {qualifier}" if qualifier else ""
    raise error(f"Expected {name} {condition}{qualifier}. Received: {name}={value}."
                f"{' ' + fix if fix else ''}")


def check_choice(value, name, choices, fix="", error=ValueError):
    """Refuses a value that is not one of `choices`.

    Raises:
        error: "Expected <name> to be one of <choices>. Received: <name>=<value>."
    """
    if value not in choices:
        raise error(f"Expected {name} to be one of {tuple(choices)}. Received: {name}={value!r}."
                    f"{' ' + fix if fix else ''}")
    return value
