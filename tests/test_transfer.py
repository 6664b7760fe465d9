"""Tests of `classifiers.transfer` and the `transfer_weights` command: weights between models."""

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from absl import app
from absl import flags
from absl.testing import flagsaver

from bottleneck_cache.bin import export_model  # noqa: F401  Defines --output too: both import in one process.
from bottleneck_cache.bin import extract_features  # noqa: F401  Defines --overwrite too.
from bottleneck_cache.bin import transfer_weights
from bottleneck_cache.classifiers import transfer

# Let flag values be read outside app.run (pytest parses its own command line).
flags.FLAGS.mark_as_parsed()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cnn(name, seed, conv3=False):
    """conv1 -> pool1 -> conv2 [-> conv3 (16 filters)] -> gap -> logits, on 8x8x1 images."""
    keras.utils.set_random_seed(seed)  # Before any layer is made: initializers take their seeds then.
    deeper = [keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")] if conv3 else []
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2"),
        *deeper,
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(3, name="logits"),
    ], name=name)


def small_cnn(seed=0):
    """conv1 -> pool1 -> conv2 -> gap -> logits, on 8x8x1 images."""
    return _cnn("small_cnn", seed)


def deep_cnn(seed=1):
    """small_cnn's first layers, then conv3 (16 filters), so logits sees 16 features, not 8."""
    return _cnn("deep_cnn", seed, conv3=True)


def weights_of(model):
    """Each layer's weights, by name: {name: [arrays]}, copied."""
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in transfer.leaf_layers(model)}


def assert_same_weights(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def assert_differ(first, second):
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def rows(report):
    return {row.target_layer: row for row in report.layers}


def test_by_name_copies_matching_layers_and_leaves_others():
    source, target = small_cnn(), deep_cnn()
    before = weights_of(target)
    report = transfer.transfer_weights(source, target, match="name")
    assert [row.target_layer for row in report.layers] == ["conv1", "conv2", "conv3", "logits"]
    assert (report.num_copied, report.num_skipped) == (2, 2)
    after, expected = weights_of(target), weights_of(source)
    for name in ("conv1", "conv2"):
        assert rows(report)[name].copied and rows(report)[name].source_layer == name
        assert_same_weights(after[name], expected[name])
        assert_differ(after[name], before[name])
    for name in ("conv3", "logits"):
        assert_same_weights(after[name], before[name])
    assert rows(report)["conv3"] == transfer.LayerTransfer(
        "conv3", None, False, "no layer named 'conv3' in the source")
    assert rows(report)["logits"].reason == "shapes differ: source [(8,3),(3,)] target [(16,3),(3,)]"
    assert rows(report)["logits"].source_layer == "logits"


def test_by_position_pairs_the_ith_layers_with_weights():
    source, target = small_cnn(), deep_cnn()
    report = transfer.transfer_weights(source, target, match="position")
    assert [(row.target_layer, row.source_layer, row.copied) for row in report.layers] == [
        ("conv1", "conv1", True), ("conv2", "conv2", True), ("conv3", "logits", False),
        ("logits", None, False)]
    assert rows(report)["conv3"].reason == "type differs: source Dense, target Conv2D"
    assert rows(report)["logits"].reason == "no weights in the source left to pair"
    assert_same_weights(weights_of(target)["conv2"], weights_of(source)["conv2"])


def test_position_ignores_names():
    keras.utils.set_random_seed(2)
    source = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="a"),
                               keras.layers.Dropout(0.5), keras.layers.Dense(2, name="b")])
    target = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="x"),
                               keras.layers.Dense(2, name="y")])
    with pytest.raises(ValueError, match="Try --match=position"):
        transfer.transfer_weights(source, target, match="name")
    report = transfer.transfer_weights(source, target, match="position")
    assert report.num_copied == 2 and report.num_skipped == 0
    assert_same_weights(target.get_weights(), source.get_weights())


def test_type_differs_with_the_same_name_and_shapes():
    keras.utils.set_random_seed(3)
    source = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="layer"),
                               keras.layers.Dense(2, name="out")])
    # Same name, other class (and other shapes): the type is what the reason names.
    target = keras.Sequential([keras.Input((6,)), keras.layers.BatchNormalization(name="layer"),
                               keras.layers.Dense(4, name="mid"), keras.layers.Dense(2, name="out")])
    report = transfer.transfer_weights(source, target)
    assert rows(report)["layer"].reason == "type differs: source Dense, target BatchNormalization"
    assert rows(report)["mid"].reason == "no layer named 'mid' in the source"
    assert rows(report)["out"].copied


def test_nested_models_are_flattened():
    source = small_cnn()
    keras.utils.set_random_seed(4)
    backbone = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.BatchNormalization(name="bn"),
    ], name="backbone")
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
    target = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="nested")
    assert [layer.name for layer in transfer.leaf_layers(target)][1:] == [
        "conv1", "pool1", "conv2", "bn", "gap", "logits"]
    report = transfer.transfer_weights(source, target)
    assert [(row.target_layer, row.copied) for row in report.layers] == [
        ("conv1", True), ("conv2", True), ("bn", False), ("logits", True)]
    assert_same_weights(backbone.get_layer("conv2").get_weights(), source.get_layer("conv2").get_weights())
    # And the other way: a nested source into a flat target.
    flat = small_cnn(seed=5)
    report = transfer.transfer_weights(target, flat, match="position")
    assert [(row.target_layer, row.source_layer, row.copied) for row in report.layers] == [
        ("conv1", "conv1", True), ("conv2", "conv2", True), ("logits", "bn", False)]


def test_bad_match_and_nothing_matches_are_one_clear_error():
    source, target = small_cnn(), deep_cnn()
    before = target.get_weights()
    with pytest.raises(ValueError, match=r"Expected match to be one of \('name', 'position'\). "
                                         r"Received: match='type'. Pass --match=name"):
        transfer.transfer_weights(source, target, match="type")
    keras.utils.set_random_seed(6)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(7, name="conv1")])
    with pytest.raises(ValueError, match=r"Expected at least one layer of the target 'deep_cnn' to match "
                       r"a layer of the source .* by name .* Received none: conv1: type differs: source "
                       r"Dense, target Conv2D; conv2: no layer named 'conv2' in the source; .* Try "
                       r"--match=position"):
        transfer.transfer_weights(other, target)
    with pytest.raises(ValueError, match="by position .* Try --match=name"):
        transfer.transfer_weights(other, target, match="position")
    empty = keras.Sequential([keras.Input((3,)), keras.layers.Flatten()], name="empty")
    with pytest.raises(ValueError, match="Received none: the target 'empty' has no layers with weights"):
        transfer.transfer_weights(source, empty)
    assert_same_weights(target.get_weights(), before)


def test_format_report():
    report = transfer.transfer_weights(small_cnn(), deep_cnn())
    lines = transfer.format_report(report).splitlines()
    assert lines[0].split() == ["target", "layer", "source", "layer", "result", "reason"]
    assert lines[1].split()[:4] == ["conv1", "conv1", "copied", "same"]
    assert lines[3].split()[:4] == ["conv3", "-", "skipped", "no"]
    assert lines[-1] == "2 of 4 layers took weights (matched by name)"
    assert all(line[lines[0].index("result"):].split()[0] in ("result", "copied", "skipped")
               for line in lines[:-1])


@pytest.fixture
def saved_models(tmp_path):
    """small_cnn.keras and deep_cnn.keras in `tmp_path / "models"`."""
    folder = tmp_path / "models"
    folder.mkdir()
    source, target = small_cnn(), deep_cnn()
    source.save(folder / "small_cnn.keras")
    target.save(folder / "deep_cnn.keras")
    return {"folder": folder, "source": str(folder / "small_cnn.keras"),
            "target": str(folder / "deep_cnn.keras"), "source_weights": weights_of(source),
            "target_weights": weights_of(target)}


def test_file_round_trip(saved_models, tmp_path):
    output = str(tmp_path / "out" / "deep_init.keras")
    report = transfer.transfer_weights_file(saved_models["source"], saved_models["target"], output)
    assert report.num_copied == 2
    written = weights_of(keras.saving.load_model(output, compile=False))
    for name in ("conv1", "conv2"):
        assert_same_weights(written[name], saved_models["source_weights"][name])
    for name in ("conv3", "logits"):
        assert_same_weights(written[name], saved_models["target_weights"][name])
    # The target file is unchanged, and nothing but the output was written.
    unchanged = weights_of(keras.saving.load_model(saved_models["target"], compile=False))
    assert_same_weights(unchanged["conv1"], saved_models["target_weights"]["conv1"])
    assert os.listdir(tmp_path / "out") == ["deep_init.keras"]

    with pytest.raises(ValueError, match="which exists. Pass --overwrite to replace it"):
        transfer.transfer_weights_file(saved_models["source"], saved_models["target"], output)
    report = transfer.transfer_weights_file(saved_models["source"], saved_models["target"], output,
                                            match="position", overwrite=True)
    assert report.match == "position" and report.num_copied == 2
    assert os.listdir(tmp_path / "out") == ["deep_init.keras"]


def test_legacy_h5_source(saved_models, tmp_path):
    h5 = str(tmp_path / "small_cnn.h5")
    keras.saving.load_model(saved_models["source"], compile=False).save(h5)
    output = str(tmp_path / "deep_init.keras")
    assert transfer.transfer_weights_file(h5, saved_models["target"], output).num_copied == 2


def test_file_errors_leave_nothing_behind(saved_models, tmp_path):
    folder = saved_models["folder"]
    before = sorted(os.listdir(folder))
    source, target = saved_models["source"], saved_models["target"]
    with pytest.raises(ValueError, match=r"Expected --output to be a .keras file. Received: '.*deep.h5'"):
        transfer.transfer_weights_file(source, target, str(folder / "deep.h5"))
    with pytest.raises(ValueError, match=r"Expected --source to be a Keras model file .* Received: "
                       r"'.*missing.keras', which does not exist"):
        transfer.transfer_weights_file(str(folder / "missing.keras"), target, str(folder / "out.keras"))
    with pytest.raises(ValueError, match=r"Expected --target to be a Keras model file .* Received: '.*model.txt'"):
        transfer.transfer_weights_file(source, str(folder / "model.txt"), str(folder / "out.keras"))
    (tmp_path / "garbage.h5").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"Received: '.*garbage.h5', which Keras could not load"):
        transfer.transfer_weights_file(str(tmp_path / "garbage.h5"), target, str(folder / "out.keras"))
    with pytest.raises(ValueError, match="Expected match to be one of .* Received: match='both'"):
        transfer.transfer_weights_file(source, target, str(folder / "out.keras"), match="both")
    assert sorted(os.listdir(folder)) == before


def test_failed_save_leaves_no_temporary(saved_models, tmp_path, monkeypatch):
    def failing_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, "save", failing_save)
    output = tmp_path / "out.keras"
    shutil.copyfile(saved_models["target"], output)  # An older output of this command.
    older = output.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        transfer.transfer_weights_file(saved_models["source"], saved_models["target"], str(output),
                                       overwrite=True)
    assert output.read_bytes() == older
    assert sorted(os.listdir(tmp_path)) == ["models", "out.keras"]


def run_command(capsys, **flag_values):
    with flagsaver.as_parsed(**flag_values):
        transfer_weights.main(["transfer_weights"])
    return capsys.readouterr()


def test_command_main(saved_models, tmp_path, capsys):
    output = str(tmp_path / "deep_init.keras")
    out = run_command(capsys, source=saved_models["source"], target=saved_models["target"],
                      output=output).out
    assert "2 of 4 layers took weights (matched by name)" in out
    assert f"Wrote {output}" in out
    with pytest.raises(SystemExit) as exit_info:
        run_command(capsys, source=saved_models["source"], target=saved_models["target"], output=output)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("transfer_weights: error: Expected --output to be a new file.")
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(app.UsageError, match="Too many command-line arguments: stray"):
        transfer_weights.main(["transfer_weights", "stray"])


def python_module(*args):
    return subprocess.run([sys.executable, "-m", "bottleneck_cache.bin.transfer_weights", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_command_as_a_subprocess(saved_models, tmp_path):
    output = str(tmp_path / "deep_init.keras")
    result = python_module(f"--source={saved_models['source']}", f"--target={saved_models['target']}",
                           f"--output={output}", "--match=position")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["target", "layer", "source", "layer", "result"]
    assert lines[3].split()[:3] == ["conv3", "logits", "skipped"]
    assert "type differs: source Dense, target Conv2D" in lines[3]
    assert lines[-2] == "2 of 4 layers took weights (matched by position)"
    assert os.path.isfile(output)


@pytest.mark.slow
def test_command_bad_input_as_a_subprocess(saved_models, tmp_path):
    result = python_module(f"--source={tmp_path / 'missing.keras'}", f"--target={saved_models['target']}",
                           f"--output={tmp_path / 'other.keras'}")
    assert result.returncode == 1
    assert "transfer_weights: error: Expected --source to be a Keras model file" in result.stderr
    assert "missing.keras', which does not exist" in result.stderr
    assert not os.path.exists(tmp_path / "other.keras")


def test_command_help_and_required_flags():
    result = python_module("--help")
    assert result.stdout.startswith("Copies weights from one Keras model into another")
    assert "--match: <name|position>" in result.stdout and "--[no]overwrite" in result.stdout
    result = python_module("--source=a.keras")
    assert result.returncode == 1
    assert "Flag --target must have a value other than None" in result.stderr


def test_a_model_file_of_another_kind_says_how_to_save_one(tmp_path):
    with pytest.raises(ValueError, match=r"^Expected --source to be a Keras model file \(\.keras, or a legacy "
                       r"\.h5\)\. Received: '.*model\.txt'\. Save the model with model\.save\('model\.keras'\)\.$"):
        transfer.transfer_weights_file(str(tmp_path / "model.txt"), str(tmp_path / "target.keras"),
                                       str(tmp_path / "out.keras"))
    assert not os.listdir(tmp_path)
