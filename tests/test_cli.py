"""Tests of both commands through their `main`, and as installed console scripts."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from absl import app
from absl import flags
from absl.testing import flagsaver

from bottleneck_cache.bin import cli
from bottleneck_cache.bin import export_model
from bottleneck_cache.bin import extract_features
from bottleneck_cache.bin import feature_extraction
from bottleneck_cache.bin import fine_tune
from bottleneck_cache.bin import predict
from bottleneck_cache.bin import transfer_weights

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


@pytest.mark.parametrize("module", [extract_features, feature_extraction, export_model, fine_tune,
                                    transfer_weights])  # predict takes image paths as arguments.
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


@pytest.mark.parametrize("name", ["extract_features", "feature_extraction", "predict",
                                  "export_model", "fine_tune", "transfer_weights"])
def test_dash_h_is_help_and_version_needs_no_other_flag(name):
    short = subprocess.run([_script(name), "-h"], capture_output=True, text=True, timeout=60)
    assert short.stdout == subprocess.run([_script(name), "--help"], capture_output=True,
                                          text=True, timeout=60).stdout
    version = subprocess.run([sys.executable, "-m", f"bin.{name}", "--version"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert re.fullmatch(rf"{name} \(bottleneck-cache\) \d+\.\d+\.\d+\n", version.stdout)


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


def test_native_start_up_noise_is_filtered_and_the_rest_passes():
    noise = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 00:00:1795992323.559198    7651 port.cc:153] oneDNN custom operations are on.",
        b"I0000 00:00:1795992323.559561    7651 cudart_stub.cc:31] Could not find cuda drivers",
        b"E0000 00:00:1795992335.271694    7882 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
    ]
    kept = [b"I1129 22:47:38.361553 139926169897856 extraction.py:569] Wrote x.h5",
            b"E0000 00:00:1795992335.271694    7882 some_op.cc:52] a real error", b"plain text",
            b"\rvgg16 train:  50%|#####     | 64/128"]
    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    for line in noise[:2] + kept[:2] + noise[2:] + kept[2:3]:
        os.write(write_fd, line + b"\n")
    os.write(write_fd, kept[3])  # A progress bar: no newline, yet it must go out.
    os.close(write_fd)
    cli._forward(read_fd, out_write)
    os.close(out_write)
    with os.fdopen(out_read, "rb") as f:
        assert f.read() == b"\n".join(kept[:3]) + b"\n" + kept[3]


def _interrupted_run(tmp_path, signum):
    """Starts an extraction, waits for its first checkpoint, sends `signum`; returns the result."""
    output = tmp_path / "caches"
    process = subprocess.Popen(
        [sys.executable, "-m", "bottleneck_cache.bin.extract_features", "--network=vgg16", "--weights=none",
         "--input_size=32", "--engine=keras", "--precision=float32", "--batch_size=8",
         "--checkpoint_every=16", f"--output_dir={output}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(
            name.endswith(".h5") for _, _, names in os.walk(output) for name in names):
        time.sleep(0.2)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, what", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_an_interrupt_is_one_line_and_a_resume_says_so(tmp_path, signum, code, what):
    returncode, out, err = _interrupted_run(tmp_path, signum)
    assert returncode == code, err
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == (
        f"extract_features: {what}. Finished checkpoints are kept beside the caches; run the "
        "same command again to resume from them.")
    assert "oneDNN" not in err and "cuInit" not in err
    if signum == signal.SIGTERM:
        return  # Resuming is the same after either signal; checked once.
    resumed = subprocess.run(
        [sys.executable, "-m", "bottleneck_cache.bin.extract_features", "--network=vgg16", "--weights=none",
         "--input_size=32", "--engine=keras", "--precision=float32", "--batch_size=8",
         "--checkpoint_every=16", f"--output_dir={tmp_path / 'caches'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"Resuming .*vgg16_digits_bottleneck_features_train.h5: \d+ of 1437 samples "
                     r"were extracted by an earlier run", resumed.stderr)


def test_a_stray_argument_is_one_line_and_exit_1():
    result = subprocess.run([_script("feature_extraction"), "--training_file=a",
                             "--validation_file=b", "stray"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("feature_extraction: error: Too many command-line arguments: stray. "
                             "Expected flags only (--name=value). Run feature_extraction --help to "
                             "see its usage.\n")
