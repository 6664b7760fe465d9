"""Both stages on real images with real ImageNet weights, where ../shared is present.

A fresh clone has no ../shared folder; then this test skips.
"""

import os

import pytest

from classifiers import training
from features import extraction

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
CIFAR = os.path.join(SHARED, "data", "cifar10-mini")
WEIGHTS = os.path.join(SHARED, "weights", "mobilenet_v2_1.00_224_no_top.weights.h5")


@pytest.mark.slow
@pytest.mark.skipif(not (os.path.isdir(CIFAR) and os.path.isfile(WEIGHTS)),
                    reason="needs ../shared/data/cifar10-mini and ../shared/weights")
def test_mobilenet_v2_on_cifar10_mini(tmp_path):
    results = extraction.extract_features(
        network="mobilenet_v2", dataset_dir=CIFAR, dataset="cifar10", weights=WEIGHTS,
        output_dir=str(tmp_path))
    assert [r.num_samples for r in results] == [1000, 1000]
    metrics = training.train_head(results[0].path, results[1].path, head="softmax",
                                  output_dir=str(tmp_path / "softmax"))
    # The reference for these features with this head is about 0.63.
    assert metrics["val_accuracy"] >= 0.55, metrics
    assert metrics["val_top5_accuracy"] >= 0.9, metrics
