"""Tests of stage two, `classifiers.training.train_head`, on synthetic caches."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bottleneck_cache.classifiers import evaluation
from bottleneck_cache.classifiers import head_format
from bottleneck_cache.classifiers import trainer
from bottleneck_cache.classifiers import training
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import files
from tests.test_cache import make_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


@pytest.mark.parametrize("head, plots", [("softmax", True), ("mlp", False), ("logreg", False)])
def test_each_head_learns_and_writes_its_outputs(pair, tmp_path, head, plots):
    output_dir = str(tmp_path / head)
    results = training.train_head(*pair, head=head, epochs=10, batch_size=16, learning_rate=0.05,
                                  output_dir=output_dir, plots=plots)
    assert results["val_accuracy"] >= 0.9
    assert "val_top5_accuracy" not in results  # only 3 classes
    assert sorted(os.listdir(output_dir)) == sorted(
        [files.MARKER, "head.npz", "history.csv", "metrics.json", "head_config.json",
         "class_report.csv", "misclassified.csv"] + (["history.png", "confusion_matrix.png"] if plots else []))
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
    assert config["head"] == head and config["head_file"] == "head.npz"


@pytest.mark.parametrize("head", ["softmax", "mlp", "logreg"])
def test_saved_head_reproduces_the_metrics(pair, tmp_path, head):
    results = training.train_head(*pair, head=head, epochs=5, output_dir=str(tmp_path / "out"))
    saved = head_format.load(os.path.join(results["output_dir"], "head.npz"))
    validation = cache.read_cache(pair[1])
    metrics = evaluation.evaluate(saved.probabilities(validation.features), validation.labels)
    assert metrics == pytest.approx({k: results[k] for k in metrics})
    train = cache.read_cache(pair[0])
    flat = train.features.reshape(len(train.labels), -1)
    np.testing.assert_allclose(saved.mean, flat.mean(axis=0), rtol=1e-5, atol=1e-5)
    variance = flat.var(axis=0)
    np.testing.assert_allclose(saved.scale, np.sqrt(variance + variance.mean()), rtol=1e-5)
    assert saved.settings["head"] == head and saved.class_names == ("class_0", "class_1", "class_2")
    assert [k.shape for k in saved.kernels] == ([(8, 256), (256, 3)] if head == "mlp" else [(8, 3)])


def test_training_imports_neither_tensorflow_nor_keras(pair, tmp_path):
    code = ("import sys\n"
            "from classifiers import training\n"
            f"training.train_head({pair[0]!r}, {pair[1]!r}, head='mlp', epochs=2, "
            f"output_dir={str(tmp_path / 'out')!r})\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'matplotlib', 'jax', 'torch')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_standardization_has_a_variance_floor():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 4)) * [10.0, 1.0, 0.01, 0.0] + [5.0, -1.0, 2.0, 3.0]
    mean, scale = trainer.standardization(features)
    assert mean.dtype == scale.dtype == np.float32
    np.testing.assert_allclose(mean, features.mean(axis=0), rtol=1e-5, atol=1e-6)
    floor = features.var(axis=0).mean()  # About 101 / 4.
    np.testing.assert_allclose(scale, np.sqrt(features.var(axis=0) + floor), rtol=1e-5)
    # The loud feature is all but standardized; the quiet and the constant one are divided by the
    # average spread, not blown up to unit variance.
    assert 0.85 < features[:, 0].std() / scale[0] < 1 and features[:, 2].std() / scale[2] < 0.01
    assert scale[3] == pytest.approx(np.sqrt(floor), rel=1e-5)
    np.testing.assert_array_equal(trainer.standardization(np.ones((5, 3)))[1], np.ones(3, np.float32))


def test_evaluation_is_scikit_learns():
    from sklearn import metrics  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(0)
    for num_classes in (2, 3, 7):
        probabilities = rng.random((60, num_classes)).astype(np.float32)
        probabilities[:5] = 0
        probabilities[:5, 0] = 1  # Probabilities of 0 and 1: log loss clips them.
        probabilities[5:9] = 1  # Ties: top-5 breaks them as scikit-learn's stable sort.
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        labels = rng.integers(0, num_classes, 60)
        found = evaluation.evaluate(probabilities, labels)
        p = probabilities.astype(np.float64) / probabilities.sum(axis=1, keepdims=True, dtype=np.float64)
        classes = np.arange(num_classes)
        assert found["val_accuracy"] == metrics.accuracy_score(labels, p.argmax(axis=1))
        assert found["val_loss"] == pytest.approx(metrics.log_loss(labels, p, labels=classes), rel=1e-12)
        if num_classes >= 5:
            assert found["val_top5_accuracy"] == metrics.top_k_accuracy_score(labels, p, k=5,
                                                                              labels=classes)


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
        assert head_format.load(str(tmp_path / head / "head.npz")).kernels[0].shape == (12, 3)


def test_early_stopping(tmp_path):
    # Validation classes sit elsewhere than training classes: val_loss soon rises.
    train = write_split(tmp_path / "t.h5", "train")
    validation = write_split(tmp_path / "v.h5", "validation", centre_seed=7)
    results = training.train_head(train, validation, epochs=200, learning_rate=0.05, early_stopping=2,
                                  output_dir=str(tmp_path / "out"))
    assert results["epochs_run"] < 200
    with open(tmp_path / "out" / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == results["epochs_run"]
    # The best epoch's weights are kept: the head's val_loss is the lowest of the history.
    best = min(float(row["val_loss"]) for row in history)
    assert results["val_loss"] == pytest.approx(best, rel=1e-4)


def test_default_output_dir():
    # The Udacity lab's pickles are named like caches.
    assert training.default_output_dir("lab/vgg_cifar10_100_bottleneck_features_train.p", "softmax") == (
        os.path.join("runs", "vgg_cifar10_100_softmax"))
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
    (dict(learning_rate=0.0), "Expected learning_rate to be a finite number > 0. Received: "
                              "learning_rate=0.0"),
    (dict(learning_rate=float("nan")), "Expected learning_rate to be a finite number > 0. Received: "
                                       "learning_rate=nan"),
    (dict(learning_rate=float("inf")), "Expected learning_rate to be a finite number > 0"),
    (dict(learning_rate=-1e-3), "Expected learning_rate to be a finite number > 0"),
    (dict(l2=-1.0), r"Expected l2 to be a finite number >= 0, or 'auto' with head logreg. Received: "
                    r"l2=-1.0"),
    (dict(l2=float("nan")), "Expected l2 to be a finite number >= 0"),
    (dict(l2="often"), "Expected l2 to be a finite number >= 0"),
    (dict(l2="auto"), r"Expected l2='auto' only with head logreg \(cross-validated penalty\). "
                      r"Received: head='softmax', l2='auto'"),
])
def test_bad_arguments(pair, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.train_head(*pair, output_dir=str(tmp_path / "out"), **kwargs)


def test_missing_cache(pair, tmp_path):
    with pytest.raises(cache.CacheError, match="does not exist"):
        training.train_head(pair[0], str(tmp_path / "nope.h5"))


@pytest.mark.parametrize("head", ["softmax", "mlp"])
def test_a_stack_of_heads_trains_each_as_it_would_alone(head):
    rng = np.random.default_rng(0)
    x_train, x_val = rng.normal(size=(90, 12)).astype(np.float32), rng.normal(size=(30, 12)).astype(np.float32)
    y_train, y_val = rng.integers(0, 5, 90), rng.integers(0, 5, 30)
    rates, l2s, dropouts = (0.1, 0.01, 0.003), (0.0, 0.01, 0.1), (0.5, 0.2, 0.0)

    def spec(index):
        pick = slice(None) if index is None else slice(index, index + 1)
        return trainer.StackSpec(head, 5, 16, rates[pick], l2s[pick], dropouts[pick], epochs=12,
                                 batch_size=32, early_stopping=3, seed=4)

    stacked = trainer.train_stack(x_train, y_train, x_val, y_val, spec(None))
    for index, together in enumerate(stacked):
        alone = trainer.train_stack(x_train, y_train, x_val, y_val, spec(index))[0]
        assert together.epochs_run == alone.epochs_run and together.best_epoch == alone.best_epoch
        for mine, theirs in zip(together.kernels + together.biases, alone.kernels + alone.biases):
            np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)
        assert [row["val_accuracy"] for row in together.history] == pytest.approx(
            [row["val_accuracy"] for row in alone.history])
    # Different settings give different heads (the test would pass vacuously otherwise).
    assert not np.allclose(stacked[0].kernels[0], stacked[1].kernels[0])


@pytest.mark.parametrize("head, stack_type", [("softmax", trainer.DenseStack), ("mlp", trainer.DenseStack),
                                              ("softmax", trainer.SoftmaxStack)])
def test_stack_gradients_are_those_of_the_loss(head, stack_type):
    """Finite differences of sparse cross-entropy + l2 * sum(kernel ** 2), per parameter."""
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(8, 6)), rng.integers(0, 4, 8)
    spec = trainer.StackSpec(head, 4, 5, (0.1, 0.2), (0.01, 0.0), (0.0, 0.0), 1, 8, 0, 0)
    stack = stack_type(spec, 6, np.random.default_rng(0), dtype=np.float64)
    uniform = np.zeros((8, 5)) if head == "mlp" else None  # Keep every unit.
    stack.step(x, labels, uniform, update=False)
    assert [p.dtype for p in stack.parameters + stack.gradients] == [np.float64] * 2 * len(stack.parameters)
    for param, grad in zip(stack.parameters, [g.copy() for g in stack.gradients]):
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            old = param[index]
            param[index] = old + 1e-6
            plus = stack.step(x, labels, uniform, update=False)[0].sum() / len(x)
            param[index] = old - 1e-6
            minus = stack.step(x, labels, uniform, update=False)[0].sum() / len(x)
            param[index] = old
            numeric[index] = (plus - minus) / 2e-6
        np.testing.assert_allclose(grad, numeric, atol=1e-7)


class _EveryEpoch(trainer.SoftmaxStack):
    """Validates after every epoch, as Keras does (the reference for validation blocks)."""

    def validation_block(self, epochs, validation_rows):
        return 1


@pytest.mark.parametrize("early_stopping", [0, 3])
def test_softmax_stack_trains_as_the_plain_layout_and_validates_in_blocks(early_stopping):
    """SoftmaxStack (class-major, chunked products, validation of a block of epochs from snapshots)
    gives the heads, histories and early stops of DenseStack validated after every epoch."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(6, 600))
    y_train, y_val = rng.integers(0, 6, 700), rng.integers(0, 6, 200)
    x_train = (centres[y_train] + rng.normal(scale=6.0, size=(700, 600))).astype(np.float32)
    x_val = (centres[y_val] + rng.normal(scale=6.0, size=(200, 600))).astype(np.float32)
    spec = trainer.StackSpec("softmax", 6, 16, (0.001, 0.03, 0.1), (0.0, 0.01, 0.0), (0.5,) * 3,
                             epochs=20, batch_size=200, early_stopping=early_stopping, seed=3)
    assert 2 * trainer.chunk_rows(600, 18) <= 200  # A batch's products are chunked.
    reference = trainer.train_stack(x_train, y_train, x_val, y_val, spec, stack_type=trainer.DenseStack)
    for stack_type in (trainer.SoftmaxStack, _EveryEpoch):
        for fast, plain in zip(trainer.train_stack(x_train, y_train, x_val, y_val, spec, stack_type=stack_type),
                               reference):
            assert (fast.epochs_run, fast.best_epoch) == (plain.epochs_run, plain.best_epoch)
            for mine, theirs in zip(fast.kernels + fast.biases, plain.kernels + plain.biases):
                assert mine.shape == theirs.shape and mine.dtype == np.float32
                np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-4)  # float32 rounding, 20 epochs
            assert len(fast.history) == len(plain.history) == fast.epochs_run
            for mine, theirs in zip(fast.history, plain.history):
                assert mine.keys() == theirs.keys() and mine == pytest.approx(theirs, rel=1e-4, abs=1e-5)
    lines = []  # One line per epoch, in order, also when blocks are scored in a helper thread.
    alone = trainer.train_stack(x_train, y_train, x_val, y_val, dataclasses.replace(
        spec, learning_rates=(0.1,), l2s=(0.0,), dropouts=(0.5,)), log=lines.append)[0]
    assert [line.split(":")[0] for line in lines] == [f"Epoch {e + 1}/20" for e in range(alone.epochs_run)]
    epochs_run = [head.epochs_run for head in reference]
    if early_stopping:  # Heads stop at different epochs, inside validation blocks.
        assert min(epochs_run) < 20 and len(set(epochs_run)) > 1
    else:
        assert epochs_run == [20] * 3


@pytest.mark.parametrize("rows", [7, 64, 250, 1001])
def test_chunked_products_are_the_products(rows):
    rng = np.random.default_rng(rows)
    a, b = rng.normal(size=(rows, 1280)).astype(np.float32), rng.normal(size=(1280, 10)).astype(np.float32)
    g = rng.normal(size=(10, rows)).astype(np.float32)
    np.testing.assert_allclose(trainer.chunked_matmul(a, b), a @ b, rtol=1e-4, atol=1e-3)
    out = np.full((10, 1280), np.nan, np.float32)
    assert trainer.chunked_gradient(g, a, out) is out
    np.testing.assert_allclose(out, g @ a, rtol=1e-4, atol=1e-3)


def test_auto_l2_is_chosen_on_the_training_split_only(tmp_path):
    train = write_split(tmp_path / "t.h5", "train", num_classes=4, per_class=15, feature_shape=(6,))
    chosen = []
    for seed in (2, 3):  # Two different validation caches: same choice, same head.
        validation = write_split(tmp_path / f"v{seed}.h5", "validation", num_classes=4, per_class=5,
                                 feature_shape=(6,), seed=seed, centre_seed=seed)
        results = training.train_head(train, validation, head="logreg", l2="auto",
                                      output_dir=str(tmp_path / f"out{seed}"))
        assert results["chosen_l2"] in training.AUTO_L2 and results["settings"]["l2"] == "auto"
        chosen.append(head_format.load(str(tmp_path / f"out{seed}" / "head.npz")))
    np.testing.assert_array_equal(chosen[0].kernels[0], chosen[1].kernels[0])
    few = write_split(tmp_path / "few.h5", "train", num_classes=4, per_class=1, feature_shape=(6,))
    with pytest.raises(ValueError, match="Expected at least 2 training samples of every class for "
                       "--l2=auto .* Received: a class with 1"):
        training.train_head(few, validation, head="logreg", l2="auto", output_dir=str(tmp_path / "few"))
