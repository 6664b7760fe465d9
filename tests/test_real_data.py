"""Both stages on real images with real ImageNet weights: an opt-in test.

It runs where `$BOTTLENECK_CACHE_DATA_DIR` holds `cifar10-mini/` (100 CIFAR-10
images per class in `train/<class>/` and `val/<class>/`) and
`$BOTTLENECK_CACHE_WEIGHTS_DIR` holds Keras' `mobilenet_v2_1.00_224_no_top.weights.h5`;
both default to the development machines' folders beside the checkout. Elsewhere
(a fresh clone) it skips.
"""

import os

import pytest

from bottleneck_cache.classifiers import training
from bottleneck_cache.features import extraction

_BESIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
DATA_DIR = os.environ.get("BOTTLENECK_CACHE_DATA_DIR", os.path.join(_BESIDE, "data"))
WEIGHTS_DIR = os.environ.get("BOTTLENECK_CACHE_WEIGHTS_DIR", os.path.join(_BESIDE, "weights"))
CIFAR = os.path.join(DATA_DIR, "cifar10-mini")
WEIGHTS = os.path.join(WEIGHTS_DIR, "mobilenet_v2_1.00_224_no_top.weights.h5")


@pytest.mark.slow
@pytest.mark.skipif(not (os.path.isdir(CIFAR) and os.path.isfile(WEIGHTS)),
                    reason="needs $BOTTLENECK_CACHE_DATA_DIR/cifar10-mini and "
                           "$BOTTLENECK_CACHE_WEIGHTS_DIR/mobilenet_v2_1.00_224_no_top.weights.h5")
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
