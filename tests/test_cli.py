"""Tests of both commands through their `main`, and as installed console scripts."""

import json
import os
import subprocess
import sys

import pytest
from absl import app
from absl import flags
from absl.testing import flagsaver

from bin import export_model
from bin import extract_features
from bin import feature_extraction
from bin import fine_tune
from bin import predict
from bin import transfer_weights

# Let flag values be read outside app.run (pytest parses its own command line).
flags.FLAGS.mark_as_parsed()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_extract(capsys, **flag_values):
    values = dict(network="vgg16", weights="none", input_size="32", batch_size="4")
    values.update(flag_values)
    with flagsaver.as_parsed(**values):
        extract_features.main(["extract_features"])
    return capsys.readouterr()


def run_train(capsys, **flag_values):
    with flagsaver.as_parsed(**flag_values):
        feature_extraction.main(["feature_extraction"])
    return capsys.readouterr()


def test_both_commands_end_to_end(folder_dataset, tmp_path, capsys):
    caches = str(tmp_path / "caches")
    out = run_extract(capsys, dataset_dir=folder_dataset, output_dir=caches).out
    train = os.path.join(caches, "vgg16_shapes_bottleneck_features_train.h5")
    validation = os.path.join(caches, "vgg16_shapes_bottleneck_features_validation.h5")
    assert f"train: {train} (12 samples, written)" in out
    assert f"validation: {validation} (6 samples, written)" in out
    assert "(12 samples, reused)" in run_extract(capsys, dataset_dir=folder_dataset, output_dir=caches).out

    runs = str(tmp_path / "runs")
    out = run_train(capsys, training_file=train, validation_file=validation, head="logreg",
                    output_dir=runs).out
    assert "head=logreg  classes=3  train=12  validation=6" in out
    assert "val_accuracy=" in out
    with open(os.path.join(runs, "metrics.json")) as f:
        metrics = json.load(f)
    assert f"val_accuracy={metrics['val_accuracy']:.4f}" in out

    captured = run_train(capsys, training_file=train, validation_file=validation, head="softmax",
                         epochs="2", output_dir=str(tmp_path / "softmax"))
    assert "Epoch 2/2" in captured.out  # the per-epoch log
    assert "head=softmax" in captured.out


def test_shard_and_merge_flags(folder_dataset, tmp_path, capsys):
    caches = str(tmp_path / "caches")
    for index in ("0", "1"):
        out = run_extract(capsys, dataset_dir=folder_dataset, output_dir=caches, num_shards="2",
                          shard_index=index, checkpoint_every="4").out
        assert f"bottleneck_features_train-0000{index}-of-00002.h5" in out
    out = run_extract(capsys, dataset_dir=folder_dataset, output_dir=caches, num_shards="2",
                      merge="true", checkpoint_every="4").out
    assert "vgg16_shapes_bottleneck_features_train.h5 (12 samples, written)" in out


@pytest.mark.parametrize("module", [extract_features, feature_extraction, predict, export_model,
                                    fine_tune, transfer_weights])
def test_extra_arguments_are_rejected(module):
    with pytest.raises(app.UsageError, match="Too many command-line arguments: stray"):
        module.main(["prog", "stray"])


def test_bad_input_is_one_message_and_exit_1(folder_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_extract(capsys, network="googlenet", dataset_dir=folder_dataset, output_dir=str(tmp_path))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("extract_features: error: Unknown network 'googlenet'. Expected one of:")
    assert len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == ["shapes"]

    with pytest.raises(SystemExit) as exit_info:
        run_train(capsys, training_file=str(tmp_path / "a.h5"), validation_file=str(tmp_path / "b.h5"))
    assert exit_info.value.code == 1
    assert "feature_extraction: error: Cache file" in capsys.readouterr().err


def test_pickle_needs_allow_pickle(tmp_path, capsys):
    path = tmp_path / "train.p"
    path.write_bytes(b"\x80\x04N.")
    with pytest.raises(SystemExit):
        run_extract(capsys, dataset_dir=str(path), output_dir=str(tmp_path / "out"))
    assert "--allow_pickle" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


def _script(name):
    return os.path.join(os.path.dirname(sys.executable), name)


@pytest.mark.parametrize("name, text", [("extract_features", "Extracts bottleneck features"),
                                        ("feature_extraction", "Trains a classifier head"),
                                        ("predict", "Classifies images"), ("export_model", "Exports a head"),
                                        ("fine_tune", "Fine-tunes a head"),
                                        ("transfer_weights", "Copies weights")])
def test_console_scripts_help(name, text):
    # absl's --help exits 1 after printing; what matters is what it prints.
    result = subprocess.run([_script(name), "--help"], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith(text)
    assert any(flag in result.stdout for flag in ("--batch_size", "--head_dir", "--source"))


def test_console_script_requires_its_flags():
    result = subprocess.run([_script("feature_extraction")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Flag --training_file must have a value other than None" in result.stderr


@pytest.mark.slow
def test_console_scripts_on_digits(tmp_path):
    """The demo's path: scikit-learn digits, both stages, as a user runs them."""
    caches = str(tmp_path / "caches")
    result = subprocess.run(
        [_script("extract_features"), "--network=vgg16", "--weights=none", "--input_size=32",
         "--per_class=20", f"--output_dir={caches}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "vgg16_digits_20_bottleneck_features_train.h5 (200 samples, written)" in result.stdout
    assert "img/s" in result.stderr  # the progress bar
    result = subprocess.run(
        [_script("feature_extraction"), "--head=logreg",
         f"--training_file={caches}/vgg16_digits_20_bottleneck_features_train.h5",
         f"--validation_file={caches}/vgg16_digits_bottleneck_features_validation.h5",
         f"--output_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "validation=360" in result.stdout
