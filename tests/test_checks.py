"""The argument checks' one message form."""

import pytest

from bottleneck_cache.pipeline import checks


@pytest.mark.parametrize("kwargs, message", [
    (dict(value=0, name="batch_size", min_value=1), r"^Expected batch_size >= 1\. Received: batch_size=0\.$"),
    (dict(value=0, name="lr", min_value=0, include_min=False), r"^Expected lr > 0\. Received: lr=0\.$"),
    (dict(value=1.0, name="dropout", min_value=0, max_value=1, include_max=False),
     r"^Expected dropout in \[0, 1\)\. Received: dropout=1\.0\.$"),
    (dict(value=5, name="k", max_value=4), r"^Expected k <= 4\. Received: k=5\.$"),
    (dict(value=float("nan"), name="lr", min_value=0, include_min=False, finite=True,
          fix="Pass e.g. --lr=0.001."),
     r"^Expected lr to be a finite number > 0\. Received: lr=nan\. Pass e\.g\. --lr=0\.001\.$"),
    (dict(value=0, name="per_class", min_value=1, qualifier="(or unset for all)"),
     r"^Expected per_class >= 1 \(or unset for all\)\. Received: per_class=0\.$"),
])
def test_check_scalar_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        checks.check_scalar(**kwargs)


def test_check_scalar_passes_values_in_range():
    assert checks.check_scalar(1, "batch_size", 1) == 1
    assert checks.check_scalar(0.5, "dropout", 0, 1, include_max=False) == 0.5
    assert checks.check_scalar(float("inf"), "x", 0) == float("inf")  # finite only when asked


class CustomError(ValueError):
    pass


def test_check_choice():
    assert checks.check_choice("avg", "pooling", ("avg", "max")) == "avg"
    with pytest.raises(CustomError, match=r"^Expected pooling to be one of \('avg', 'max'\)\. "
                       r"Received: pooling='sum'\. Pass --pooling=avg\.$"):
        checks.check_choice("sum", "pooling", ("avg", "max"), fix="Pass --pooling=avg.",
                            error=CustomError)
