"""Tests of stage two, `classifiers.training.train_head`, on synthetic caches."""

import csv
import json
import os

import numpy as np
import pytest

from classifiers import evaluation
from classifiers import training
from pipeline import cache
from tests.test_cache import make_metadata


def write_split(path, split, num_classes=3, per_class=20, feature_shape=(8,), seed=0, centre_seed=42,
                **metadata):
    """Writes a cache of separable features: each class is a Gaussian around its own centre."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(centre_seed).normal(scale=3.0, size=(num_classes, *feature_shape))
    labels = np.repeat(np.arange(num_classes), per_class)
    features = centres[labels] + rng.normal(scale=0.5, size=(len(labels), *feature_shape))
    with cache.CacheWriter(path, make_metadata(split=split, **metadata),
                           [f"class_{i}" for i in range(num_classes)], feature_shape) as writer:
        writer.append(features, labels, [f"{split}_{i}.jpg" for i in range(len(labels))])
        writer.commit()
    return str(path)


@pytest.fixture
def pair(tmp_path):
    return (write_split(tmp_path / "train.h5", "train", seed=1),
            write_split(tmp_path / "validation.h5", "validation", per_class=10, seed=2))


@pytest.mark.parametrize("head, head_file", [("softmax", "head.keras"), ("mlp", "head.keras"),
                                             ("logreg", "head.joblib")])
def test_each_head_learns_and_writes_its_outputs(pair, tmp_path, head, head_file):
    output_dir = str(tmp_path / head)
    results = training.train_head(*pair, head=head, epochs=10, batch_size=16, learning_rate=0.05,
                                  output_dir=output_dir)
    assert results["val_accuracy"] >= 0.9
    assert "val_top5_accuracy" not in results  # only 3 classes
    assert sorted(os.listdir(output_dir)) == sorted(
        [head_file, "history.csv", "metrics.json", "head_config.json", "history.png",
         "confusion_matrix.png", "class_report.csv", "misclassified.csv"])
    with open(os.path.join(output_dir, "misclassified.csv")) as f:
        wrong = list(csv.DictReader(f))
    assert len(wrong) == round((1 - results["val_accuracy"]) * 30)
    with open(os.path.join(output_dir, "class_report.csv")) as f:
        assert [row["class"] for row in csv.DictReader(f)][:3] == ["class_0", "class_1", "class_2"]
    with open(os.path.join(output_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["val_accuracy"] == results["val_accuracy"]
    assert {"val_accuracy", "val_loss", "head", "fit_seconds", "settings"} <= set(metrics)
    steps = "solver_iterations" if head == "logreg" else "epochs_run"
    assert metrics[steps] == results[steps] and metrics[steps] > 0
    assert f"{steps}={metrics[steps]}" in training.format_summary(results)
    with open(os.path.join(output_dir, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == (1 if head == "logreg" else 10)
    assert "val_accuracy" in rows[0]
    with open(os.path.join(output_dir, "head_config.json")) as f:
        config = json.load(f)
    assert config["network"] == "vgg16" and config["class_names"] == ["class_0", "class_1", "class_2"]
    assert config["input_size"] == [32, 32]


def test_saved_keras_head_reproduces_the_metrics(pair, tmp_path):
    import keras

    results = training.train_head(*pair, epochs=5, output_dir=str(tmp_path / "out"))
    model = keras.models.load_model(os.path.join(results["output_dir"], "head.keras"))
    validation = cache.read_cache(pair[1])
    metrics = evaluation.evaluate(model.predict(validation.features, verbose=0), validation.labels)
    assert metrics["val_accuracy"] == pytest.approx(results["val_accuracy"])


def test_top5_with_five_or_more_classes(tmp_path):
    train = write_split(tmp_path / "t.h5", "train", num_classes=6, per_class=5)
    validation = write_split(tmp_path / "v.h5", "validation", num_classes=6, per_class=3, seed=3)
    results = training.train_head(train, validation, epochs=10, learning_rate=0.05,
                                  output_dir=str(tmp_path / "out"))
    # Six well-separated classes: the true class is among the top 5 nearly always.
    assert results["val_top5_accuracy"] >= 0.8


def test_spatial_features_are_flattened(tmp_path):
    train = write_split(tmp_path / "t.h5", "train", feature_shape=(2, 2, 3))
    validation = write_split(tmp_path / "v.h5", "validation", feature_shape=(2, 2, 3), seed=3)
    for head in ("softmax", "logreg"):
        results = training.train_head(train, validation, head=head, epochs=3,
                                      output_dir=str(tmp_path / head))
        assert results["feature_shape"] == [2, 2, 3]


def test_early_stopping(tmp_path):
    # Validation classes sit elsewhere than training classes: val_loss soon rises.
    train = write_split(tmp_path / "t.h5", "train")
    validation = write_split(tmp_path / "v.h5", "validation", centre_seed=7)
    results = training.train_head(train, validation, epochs=200, learning_rate=0.05, early_stopping=2,
                                  output_dir=str(tmp_path / "out"))
    assert results["epochs_run"] < 200


def test_default_output_dir():
    assert training.default_output_dir("c/vgg_cifar10_100_bottleneck_features_train.h5", "mlp") == (
        os.path.join("runs", "vgg_cifar10_100_mlp"))


@pytest.mark.parametrize("attribute, train_kwargs, message", [
    ("network", dict(network="resnet50"), r"differ in network: 'resnet50' in .*train.h5, 'vgg16' in"),
    ("dataset", dict(dataset="cifar10"), r"differ in dataset: 'cifar10'"),
    ("layer", dict(layer="fc1"), r"differ in layer: 'fc1'"),
    ("input_size", dict(input_size=(64, 64)), r"differ in input_size: \(64, 64\)"),
    ("weights", dict(weights="imagenet"), r"differ in weights: 'imagenet'"),
    ("pooling", dict(pooling="max"), r"differ in pooling: 'max'"),
    ("preprocessing", dict(preprocessing="other"), r"differ in preprocessing: 'other'"),
])
def test_mismatched_pair_is_refused(tmp_path, attribute, train_kwargs, message):
    train = write_split(tmp_path / "train.h5", "train", **train_kwargs)
    validation = write_split(tmp_path / "validation.h5", "validation")
    with pytest.raises(ValueError, match=message + ".*Expected both splits extracted with the same"):
        training.train_head(train, validation, output_dir=str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_split_roles_are_checked(pair, tmp_path):
    with pytest.raises(ValueError, match=r"Expected --training_file to be a train split cache. "
                       r"Received: .*validation.h5, a validation split"):
        training.train_head(pair[1], pair[1], output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"Expected --validation_file to be a validation split cache. "
                       r"Received: .*train.h5, a train split"):
        training.train_head(pair[0], pair[0], output_dir=str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_overlapping_splits_are_refused(tmp_path):
    train = write_split(tmp_path / "t.h5", "train")
    # Same sample ids in the validation file: validation data would be trained on.
    with cache.CacheWriter(str(tmp_path / "v.h5"), make_metadata(split="validation"),
                           ["class_0", "class_1", "class_2"], (8,)) as w:
        w.append(np.zeros((2, 8)), [0, 1], ["train_0.jpg", "other.jpg"])
        w.commit()
    with pytest.raises(ValueError, match=r"1 samples are in both .*t.h5 and .*v.h5 \(e.g. train_0.jpg\): "
                       "validation data would leak into training"):
        training.train_head(train, str(tmp_path / "v.h5"))


def test_failed_training_keeps_the_previous_output(pair, tmp_path, monkeypatch):
    output_dir = tmp_path / "out"
    training.train_head(*pair, head="logreg", output_dir=str(output_dir))
    before = (output_dir / "metrics.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(training.evaluation, "evaluate", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        training.train_head(*pair, head="logreg", output_dir=str(output_dir))
    assert (output_dir / "metrics.json").read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["out", "train.h5", "validation.h5"]


def test_mismatched_classes_and_shapes_are_refused(tmp_path):
    train = write_split(tmp_path / "train.h5", "train")
    with pytest.raises(ValueError, match=r"differ in class_names: \['class_0', 'class_1', 'class_2'\]"):
        training.train_head(train, write_split(tmp_path / "v4.h5", "validation", num_classes=4))
    with pytest.raises(ValueError, match=r"differ in feature shape: \(8,\) in .*, \(5,\) in"):
        training.train_head(train, write_split(tmp_path / "v5.h5", "validation", feature_shape=(5,)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(head="svm"), r"Expected head to be one of \('softmax', 'mlp', 'logreg'\). Received: head='svm'"),
    (dict(epochs=0), "Expected epochs >= 1. Received: epochs=0"),
    (dict(batch_size=0), "Expected batch_size >= 1"),
    (dict(dropout=1.0), r"Expected dropout in \[0, 1\). Received: dropout=1.0"),
    (dict(learning_rate=0.0), "Expected learning_rate > 0 and l2 >= 0"),
    (dict(l2=-1.0), "Expected learning_rate > 0 and l2 >= 0"),
])
def test_bad_arguments(pair, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.train_head(*pair, output_dir=str(tmp_path / "out"), **kwargs)


def test_missing_cache(pair, tmp_path):
    with pytest.raises(cache.CacheError, match="does not exist"):
        training.train_head(pair[0], str(tmp_path / "nope.h5"))
