"""Tests of `classifiers.fine_tune` and the `fine_tune` command, on a tiny MobileNet."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from bottleneck_cache.classifiers import export  # noqa: F401  (registers the custom layers of model.keras)
from bottleneck_cache.classifiers import fine_tune
from bottleneck_cache.classifiers import predict
from bottleneck_cache.classifiers import training
from bottleneck_cache.features import extraction
from tests.conftest import write_folder_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT_FILES = [".bottleneck_cache.json", "fine_tune_config.json", "history.csv", "metrics.json",
                "model.keras"]


def calibrated_weights(path, size=32):
    """Writes random MobileNet weights whose BatchNorm statistics fit real activations.

    With Keras' random initialization and the default moving statistics (mean 0,
    variance 1), MobileNet's features are ~1e-21: nothing for a head to learn and
    no gradient to fine-tune with. One training-mode pass with momentum 0 sets each
    BatchNorm's moving statistics to those of a batch, so activations stay O(1).
    """
    keras.utils.set_random_seed(0)
    network = keras.applications.MobileNet(weights=None, include_top=False,
                                           input_shape=(size, size, 3))
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    network(np.random.default_rng(0).uniform(-1, 1, (16, size, size, 3)).astype("float32"),
            training=True)
    network.save_weights(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder dataset, MobileNet caches extracted at 32x32 and a softmax head trained on them."""
    base = tmp_path_factory.mktemp("fine_tune")
    dataset = base / "shapes"
    write_folder_dataset(dataset / "train", per_class=4, size=(32, 32), seed=1)
    write_folder_dataset(dataset / "val", per_class=2, size=(32, 32), seed=2)
    weights = calibrated_weights(str(base / "mobilenet_calibrated.weights.h5"))
    results = extraction.extract_features(network="mobilenet", dataset_dir=str(dataset),
                                          output_dir=str(base / "caches"), weights=weights,
                                          input_size=32, batch_size=8)
    head_dir = str(base / "runs" / "mobilenet_shapes_softmax")
    training.train_head(*(r.path for r in results), head="softmax", epochs=10, output_dir=head_dir)
    config = predict.read_head_config(head_dir)
    _, network = predict.build_network(config, weights)
    before = [[np.array(w) for w in layer.get_weights()] for layer in network.layers]
    return {"base": base, "dataset": str(dataset), "weights": weights, "head_dir": head_dir,
            "before": before}


def _network(model):
    return [layer for layer in model.layers if isinstance(layer, keras.Model)][0]


def _val_images(dataset):
    folder = os.path.join(dataset, "val")
    paths = [os.path.join(folder, c, name) for c in sorted(os.listdir(folder))
             for name in sorted(os.listdir(os.path.join(folder, c)))]
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths]).astype(np.float32)


def _check_result(trained, result, start_name, epochs):
    """Output files, metrics, which weights changed, BatchNorm statistics, and the saved model."""
    output = result.output_dir
    assert sorted(os.listdir(output)) == OUTPUT_FILES
    parent = os.path.dirname(os.path.abspath(output))
    assert [name for name in os.listdir(parent) if name.startswith(".")] == []  # No staging left.
    with open(os.path.join(trained["head_dir"], "metrics.json")) as f:
        head_metrics = json.load(f)
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(output, "history.csv")) as f:
        assert len(f.read().strip().splitlines()) == 1 + epochs
    assert result.head_val_accuracy == metrics["head_val_accuracy"] == head_metrics["val_accuracy"]
    assert result.val_accuracy == metrics["val_accuracy"] and 0 <= result.val_accuracy <= 1
    # Before any step, the end-to-end model on the images is the head on the cached features.
    assert result.start_val_accuracy == metrics["start_val_accuracy"]
    assert result.start_val_accuracy == pytest.approx(head_metrics["val_accuracy"], abs=1e-6)
    assert result.unfrozen_from == metrics["unfrozen_from"] == start_name
    assert metrics["num_trainable_layers"] == result.num_trainable_layers
    assert metrics["epochs"] == epochs and metrics["num_train"] == 12 and metrics["num_validation"] == 6
    summary = fine_tune.format_summary(result)
    assert f"after fine-tuning (frozen-feature head: {result.head_val_accuracy:.3f}" in summary
    assert f"unfrozen from {start_name} ({result.num_trainable_layers} layers)" in summary

    network = _network(result.model)
    names = [layer.name for layer in network.layers]
    start = names.index(start_name)
    changed = []
    for index, layer in enumerate(network.layers):
        before, after = trained["before"][index], layer.get_weights()
        same = all(np.array_equal(b, a) for b, a in zip(before, after))
        if isinstance(layer, keras.layers.BatchNormalization):
            assert same, f"{layer.name}: BatchNorm weights or moving statistics changed"
            assert not layer.trainable
        elif index < start:
            assert same, f"{layer.name} is before {start_name} but changed"
        elif layer.get_weights():
            changed.append(layer.name)
            assert not same, f"{layer.name} is from {start_name} on but did not change"
    assert len(changed) == result.num_trainable_layers > 0

    loaded = keras.models.load_model(os.path.join(output, "model.keras"))
    images = _val_images(trained["dataset"])
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(images)),
                               np.asarray(result.model.predict_on_batch(images)), atol=1e-6)
    assert export.class_names(loaded) == ["cat", "dog", "fish"]
    for layer in _network(loaded).layers:
        for saved, kept in zip(layer.get_weights(), network.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(saved, kept)


def test_block_names_by_family(trained):
    mobilenet = _network(fine_tune.build_fine_tune_model(
        trained["head_dir"], trained["weights"], unfreeze_blocks=2)[0])
    blocks = fine_tune.block_names(mobilenet)
    assert list(blocks)[:2] == ["conv_1", "conv_2"] and len(blocks) == 13
    assert blocks["conv_13"][0] == "conv_dw_13" and blocks["conv_13"][-1] == "conv_pw_13_relu"
    assert blocks["conv_2"][0] == "conv_pad_2"  # The padding before a strided block is in it.
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    blocks = fine_tune.block_names(vgg)
    assert list(blocks) == [f"block{i}" for i in range(1, 6)]
    assert blocks["block5"] == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Pass --unfreeze_from=<layer name> instead"):
        fine_tune.block_names(plain)
    name, rows = fine_tune.list_layers(trained["head_dir"])  # Random weights: no file needed.
    assert name.startswith("mobilenet") and [row[0] for row in rows] == list(range(len(rows)))
    assert [row[1:] for row in rows if row[1] == "conv_dw_13"] == [("conv_dw_13", "conv_13", "weights")]
    assert any(row[1] == "conv_dw_13_bn" and row[3].startswith("BatchNorm") for row in rows)
    assert "conv_pw_13" in fine_tune.format_layers(name, rows)


@pytest.mark.slow
def test_fine_tune_last_block(trained):
    result = fine_tune.fine_tune(trained["head_dir"], trained["dataset"], unfreeze_blocks=1,
                                 epochs=2, learning_rate=1e-3, batch_size=4,
                                 weights=trained["weights"], verbose=0)
    assert result.output_dir == trained["head_dir"] + "_fine_tuned"
    _check_result(trained, result, "conv_dw_13", epochs=2)
    assert result.num_trainable_layers == 2  # conv_dw_13 and conv_pw_13; their BatchNorms stay.
    with open(os.path.join(result.output_dir, "fine_tune_config.json")) as f:
        config = json.load(f)
    assert config["unfreeze_blocks"] == 1 and config["dataset"] == "shapes"
    assert config["head_config"]["network"] == "mobilenet"


@pytest.mark.slow
def test_fine_tune_from_a_layer(trained, tmp_path):
    output = str(tmp_path / "from_layer")
    result = fine_tune.fine_tune(trained["head_dir"], trained["dataset"], output_dir=output,
                                 unfreeze_from="conv_pw_12", epochs=1, learning_rate=1e-3,
                                 batch_size=8, weights=trained["weights"], seed=3, verbose=0)
    assert result.output_dir == output
    _check_result(trained, result, "conv_pw_12", epochs=1)
    assert result.num_trainable_layers == 3  # conv_pw_12, conv_dw_13, conv_pw_13.


def test_settings():
    settings = fine_tune.FineTuneSettings("runs/x_softmax", "data", unfreeze_blocks=2, weights="w.h5")
    checked = settings.check()
    assert checked.output_dir == os.path.normpath("runs/x_softmax") + "_fine_tuned"
    assert checked.inputs == ("runs/x_softmax", "data", "w.h5")
    assert settings.output_dir is None  # Frozen: check returns a copy.
    assert fine_tune.FineTuneSettings("h", weights="none").inputs == ("h", None, None)
    with pytest.raises(TypeError, match="unfreeze_block"):
        fine_tune.fine_tune("runs/x_softmax", unfreeze_block=1)


def test_bad_arguments_are_one_clear_error(trained, tmp_path):
    head_dir, dataset, weights = trained["head_dir"], trained["dataset"], trained["weights"]
    output = str(tmp_path / "out")
    for kwargs, message in (
        ({"unfreeze_from": "conv_pw_13", "unfreeze_blocks": 1}, "exactly one of .* Received: both"),
        ({}, "exactly one of .* Received: neither"),
        ({"unfreeze_blocks": 0}, "unfreeze_blocks >= 1"),
        ({"unfreeze_blocks": 1, "epochs": 0}, "epochs >= 1"),
        ({"unfreeze_blocks": 1, "weights": None}, "Expected --weights=PATH"),
    ):
        kwargs = {"weights": weights, **kwargs}
        with pytest.raises(ValueError, match=message):
            fine_tune.fine_tune(head_dir, dataset, output_dir=output, **kwargs)
    with pytest.raises(ValueError, match="Expected a head folder"):
        fine_tune.fine_tune(str(tmp_path), dataset, output_dir=output, unfreeze_blocks=1)
    # Another dataset, or the same one with an image changed since extraction.
    copy = str(tmp_path / "shapes")
    shutil.copytree(dataset, copy)
    os.utime(os.path.join(copy, "val", "dog", "dog_0.jpg"), (0, 0))
    with pytest.raises(ValueError, match=r"Expected the images the head was trained on \(dataset "
                       r"shapes, validation split digest [0-9a-f]{12}…\); Received a dataset with "
                       "another digest at .*Pass the --dataset_dir used with extract_features"):
        fine_tune.fine_tune(head_dir, copy, output_dir=output, unfreeze_blocks=1, weights=weights)
    with pytest.raises(ValueError, match="Expected --dataset_dir: the head was trained on images of "
                       "dataset 'shapes'"):
        fine_tune.fine_tune(head_dir, None, output_dir=output, unfreeze_blocks=1, weights=weights)
    os.makedirs(output)
    with pytest.raises(ValueError, match="which exists. Pass --overwrite"):
        fine_tune.fine_tune(head_dir, dataset, output_dir=output, unfreeze_blocks=1, weights=weights)
    os.rmdir(output)
    # Found once the network is built.
    with pytest.raises(ValueError, match="Received: 'conv_pw_99'. Valid names near it: .*conv_pw_9.*"
                       "--list_layers"):
        fine_tune.fine_tune(head_dir, dataset, output_dir=output, unfreeze_from="conv_pw_99",
                            weights=weights)
    with pytest.raises(ValueError, match="Expected --unfreeze_blocks between 1 and 13"):
        fine_tune.fine_tune(head_dir, dataset, output_dir=output, unfreeze_blocks=14, weights=weights)
    assert sorted(os.listdir(tmp_path)) == ["shapes"]  # Nothing written, nothing half-written.


def _command(*flags):
    return subprocess.run([sys.executable, "-m", "bottleneck_cache.bin.fine_tune", *flags], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_command_errors_are_one_message_and_exit_1(trained, tmp_path):
    result = _command(f"--head_dir={trained['head_dir']}", f"--dataset_dir={trained['dataset']}",
                      "--unfreeze_from=conv_pw_13", "--unfreeze_blocks=1",
                      f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("fine_tune: error: Expected exactly one of --unfreeze_from")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_command_fine_tunes(trained, tmp_path):
    output = tmp_path / "cli"
    result = _command(f"--head_dir={trained['head_dir']}", f"--dataset_dir={trained['dataset']}",
                      f"--weights={trained['weights']}", "--unfreeze_blocks=1", "--epochs=1",
                      "--batch_size=6", f"--output_dir={output}")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("val_accuracy ") and "after fine-tuning (frozen-feature head: " in last
    assert "unfrozen from conv_dw_13 (2 layers)" in last
    assert str(output) in last and sorted(os.listdir(output)) == OUTPUT_FILES


def _copied_head(trained, tmp_path, edit_config=None, edit_metrics=None):
    """A copy of the trained head folder with its head_config.json and metrics.json edited."""
    head_dir = str(tmp_path / "head")
    shutil.copytree(trained["head_dir"], head_dir)
    for name, edit in (("head_config.json", edit_config), ("metrics.json", edit_metrics)):
        if edit is not None:
            path = os.path.join(head_dir, name)
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            edit(data)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(data, f)
    return head_dir


def test_head_without_its_metrics_or_caches_is_refused(trained, tmp_path):
    output = str(tmp_path / "out")
    head_dir = _copied_head(trained, tmp_path / "a", edit_metrics=lambda m: m.pop("val_accuracy"))
    with pytest.raises(ValueError, match=r"^Expected .*metrics\.json, the metrics feature_extraction wrote "
                       r"beside the head, with its val_accuracy\. Received: KeyError: 'val_accuracy'\. "
                       r"Train the head again\.$"):
        fine_tune.fine_tune(head_dir, trained["dataset"], output_dir=output, unfreeze_blocks=1,
                            weights=trained["weights"])

    def older_config(config):  # A head of a version that recorded its dataset only in the caches.
        for key in ("dataset", "per_class", "dataset_digests"):
            config.pop(key, None)

    head_dir = _copied_head(trained, tmp_path / "b", older_config, lambda m: m.pop("training_file"))
    with pytest.raises(ValueError, match=r"^Expected the train cache the head in .*head was trained on "
                       r"\(not recorded\), to read its dataset, per_class, seed and digest from\. "
                       r"Received: metrics\.json records no training_file\. Restore the cache"):
        fine_tune.fine_tune(head_dir, trained["dataset"], output_dir=output, unfreeze_blocks=1,
                            weights=trained["weights"])
    assert not os.path.exists(output)


def test_command_refuses_a_list_of_learning_rates(tmp_path):
    result = _command(f"--head_dir={tmp_path}", f"--dataset_dir={tmp_path}", "--unfreeze_blocks=1",
                      "--learning_rate=1e-3,1e-4", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "fine_tune: error: Expected one number for --learning_rate. Received: 1e-3,1e-4.")
