"""Tests of `classifiers.predict` and the `predict` command, on a tiny random-weight VGG16."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bottleneck_cache.classifiers import predict
from bottleneck_cache.features import extraction
from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import cache
from tests.conftest import write_folder_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["cat", "dog", "fish"]
_HEADS = {}


def trained_heads(tmp_path_factory):
    """Extracts tiny caches once per session and trains a softmax and a logreg head on them.

    Returns:
        A dict: `dataset` (the folder dataset), `caches` (train, validation paths),
        `softmax`, `mlp` and `logreg` (head folders).
    """
    if not _HEADS:
        from bottleneck_cache.classifiers import training  # pylint: disable=g-import-not-at-top

        base = tmp_path_factory.mktemp("heads")
        dataset = base / "shapes"
        write_folder_dataset(dataset / "train", per_class=4, seed=1)
        write_folder_dataset(dataset / "val", per_class=2, seed=2)
        results = extraction.extract_features(network="vgg16", dataset_dir=str(dataset),
                                              output_dir=str(base / "caches"), weights="none",
                                              input_size=32, batch_size=8)
        caches = tuple(result.path for result in results)
        _HEADS.update(dataset=str(dataset), caches=caches)
        for head in ("softmax", "mlp", "logreg"):
            _HEADS[head] = str(base / head)
            training.train_head(*caches, head=head, epochs=3, output_dir=_HEADS[head])
    return _HEADS


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    return trained_heads(tmp_path_factory)


def cached_probabilities(head_dir, features):
    """The head's probabilities of cached features, computed the way training does."""
    with open(os.path.join(head_dir, "head_config.json")) as f:
        config = json.load(f)
    return predict.head_probabilities(predict.load_head(head_dir, config), features,
                                      len(config["class_names"]))


@pytest.mark.parametrize("head", ["softmax", "logreg"])
def test_probabilities_are_those_of_the_cached_features(heads, head):
    validation = cache.read_cache(heads["caches"][1])
    results = predict.predict(heads[head], [os.path.join(heads["dataset"], "val")], top_k=2)
    ids = [os.path.relpath(r.path, heads["dataset"]).replace(os.sep, "/") for r in results]
    assert ids == list(validation.filenames)  # Folders are searched recursively, sorted.
    expected = cached_probabilities(heads[head], validation.features)
    np.testing.assert_allclose(np.stack([r.probabilities for r in results]), expected, atol=1e-5)
    for result, row in zip(results, expected):
        assert not result.skipped and result.error is None and result.dump_path is None
        order = np.argsort(-row)
        assert [name for name, _ in result.top_k] == [CLASSES[i] for i in order[:2]]
        assert [p for _, p in result.top_k] == pytest.approx(row[order[:2]], abs=1e-5)


def test_files_and_folders_in_the_order_given(heads, tmp_path):
    dataset = heads["dataset"]
    nested = tmp_path / "photos"
    shutil.copytree(os.path.join(dataset, "val"), nested / "deep")
    (nested / ".hidden.png").write_bytes(b"")
    (nested / "notes.txt").write_text("not an image")
    single = os.path.join(dataset, "train", "fish", "fish_3.png")
    results = predict.predict(heads["softmax"], [single, str(nested)], top_k=10)
    assert [r.path for r in results][0] == single
    assert [os.path.relpath(r.path, nested) for r in results[1:]] == [
        os.path.join("deep", name, f"{name}_{i}.{'png' if i else 'jpg'}") for name in CLASSES
        for i in range(2)]
    assert all(len(r.top_k) == 3 for r in results)  # top_k is capped by the classes
    assert "\n  " in predict.format_prediction(results[0])


def test_undecodable_images_are_skipped_and_listed(heads, tmp_path, caplog):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(os.path.join(heads["dataset"], "val", "cat", "cat_0.jpg"), folder / "a.jpg")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "c.jpg").write_bytes(b"")
    results = predict.predict(heads["softmax"], [str(folder)], batch_size=2)
    assert [os.path.basename(r.path) for r in results] == ["a.jpg", "b.png", "c.jpg"]
    assert [r.skipped for r in results] == [False, True, True]
    assert "b.png" in results[1].error and results[1].top_k == () and results[1].probabilities is None
    assert "skipped" in predict.format_prediction(results[2])
    assert "Skipped" in caplog.text and "c.jpg" in caplog.text
    with pytest.raises(ValueError, match="none could be decoded"):
        predict.predict(heads["softmax"], [str(folder / "b.png"), str(folder / "c.jpg")])


def test_dump_names_images_after_their_top_classes(heads, tmp_path):
    dump = tmp_path / "dump"
    val = os.path.join(heads["dataset"], "val")
    results = predict.predict(heads["logreg"], [val], dump_dir=str(dump), dump_count=4)
    dumped = [r for r in results if r.dump_path]
    assert len(dumped) == 4 and all(r.dump_path is None for r in results[4:])
    assert sorted(os.listdir(dump)) == sorted(os.path.basename(r.dump_path) for r in dumped)
    seen = {}
    for result in dumped:
        name = "[" + " ".join(n for n, _ in result.top_k[:5]) + "]"
        seen[name] = seen.get(name, 0) + 1
        suffix = "" if seen[name] == 1 else f" ({seen[name]})"
        assert os.path.basename(result.dump_path) == f"{name}{suffix}.png"
        with Image.open(result.dump_path) as image, Image.open(result.path) as original:
            assert image.format == "PNG" and image.size == original.size and image.mode == "RGB"
    # An existing file is never overwritten.
    again = predict.predict(heads["logreg"], [results[0].path], dump_dir=str(dump))
    assert again[0].dump_path not in [r.dump_path for r in dumped]
    assert re.fullmatch(r"\[[a-z ]+\] \(\d\)\.png", os.path.basename(again[0].dump_path))


def test_dump_name():
    assert predict.dump_name(["1", "2", "3", "4", "5"]) == "[1 2 3 4 5]"
    assert predict.dump_name(["a/b", "c"]) == "[a_b c]"
    assert len(predict.dump_name(["x" * 300]).encode()) <= 240


def test_bad_head_and_inputs_are_one_clear_error(heads, tmp_path):
    image = os.path.join(heads["dataset"], "val", "cat", "cat_0.jpg")
    with pytest.raises(ValueError, match="Expected a head folder written by feature_extraction.*"
                                         "Received: a folder without head_config.json"):
        predict.predict(str(tmp_path), [image])
    with pytest.raises(ValueError, match="no such folder"):
        predict.predict(str(tmp_path / "nowhere"), [image])
    with pytest.raises(ValueError, match="missing.jpg'?, which does not exist"):
        predict.predict(heads["softmax"], [image, str(tmp_path / "missing.jpg")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="Received: none found"):
        predict.predict(heads["softmax"], [str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="top_k >= 1"):
        predict.predict(heads["softmax"], [image], top_k=0)
    with pytest.raises(ValueError, match="Expected no --weights"):
        predict.predict(heads["softmax"], [image], weights="imagenet")
    broken = tmp_path / "broken"
    shutil.copytree(heads["softmax"], broken)
    os.remove(broken / "head.npz")
    with pytest.raises(ValueError, match="Expected the trained head head.npz"):
        predict.predict(str(broken), [image])


@pytest.mark.parametrize("head", ["softmax", "mlp", "logreg"])
def test_keras_head_gives_the_trainers_probabilities(heads, head):
    from bottleneck_cache.classifiers import head_format  # pylint: disable=g-import-not-at-top

    validation = cache.read_cache(heads["caches"][1])
    saved = head_format.load(os.path.join(heads[head], "head.npz"))
    assert saved.head == head and saved.class_names == tuple(CLASSES)
    # The trainer's NumPy forward pass (standardize, then the layers) against the Keras head,
    # whose first layer has the standardization folded in.
    np.testing.assert_allclose(cached_probabilities(heads[head], validation.features),
                               saved.probabilities(validation.features), atol=1e-5)
    with open(os.path.join(heads[head], "metrics.json")) as f:
        metrics = json.load(f)
    accuracy = np.mean(saved.probabilities(validation.features).argmax(axis=1) == validation.labels)
    assert accuracy == pytest.approx(metrics["val_accuracy"])


def legacy_head(heads, tmp_path, kind):
    """A copy of the softmax head folder whose head is saved as earlier versions did."""
    from bottleneck_cache.classifiers import heads as heads_module  # pylint: disable=g-import-not-at-top

    train = cache.read_cache(heads["caches"][0])
    head_dir = tmp_path / f"legacy_{kind}"
    shutil.copytree(heads["softmax"], head_dir)
    os.remove(head_dir / "head.npz")
    with open(head_dir / "head_config.json") as f:
        config = json.load(f)
    if kind == "keras":
        model = heads_module.build_keras_head("softmax", train.feature_shape, len(CLASSES))
        model.save(head_dir / "head.keras")
        config.update(head="softmax", head_file="head.keras")
    else:
        import joblib  # pylint: disable=g-import-not-at-top

        pipeline = heads_module.build_logreg().fit(train.features.reshape(len(train.labels), -1),
                                                   train.labels)
        joblib.dump(pipeline, head_dir / "head.joblib")
        config.update(head="logreg", head_file="head.joblib")
    with open(head_dir / "head_config.json", "w") as f:
        json.dump(config, f)
    return str(head_dir)


@pytest.mark.parametrize("kind", ["keras", "joblib"])
def test_heads_of_earlier_versions_still_predict(heads, tmp_path, kind):
    head_dir = legacy_head(heads, tmp_path, kind)
    validation = cache.read_cache(heads["caches"][1])
    results = predict.predict(head_dir, [os.path.join(heads["dataset"], "val")])
    np.testing.assert_allclose(np.stack([r.probabilities for r in results]),
                               cached_probabilities(head_dir, validation.features), atol=1e-5)


def test_damaged_head_file_is_one_clear_error(heads, tmp_path):
    from bottleneck_cache.classifiers import head_format  # pylint: disable=g-import-not-at-top

    head_dir = tmp_path / "damaged"
    shutil.copytree(heads["softmax"], head_dir)
    image = os.path.join(heads["dataset"], "val", "dog", "dog_1.png")
    (head_dir / "head.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"Expected .*head.npz to be a head.npz written by "
                       r"feature_extraction. Received: "):
        predict.predict(str(head_dir), [image])
    saved = head_format.load(os.path.join(heads["softmax"], "head.npz"))
    head_format.save(str(head_dir / "head.npz"), saved)
    with np.load(head_dir / "head.npz") as data:
        arrays = dict(data)
    np.savez(head_dir / "head.npz", **{**arrays, "format_version": np.array(99)})
    with pytest.raises(ValueError, match="Expected .*head.npz in format 'bottleneck-cache-head' version "
                       "1. Received: format='bottleneck-cache-head', version=99"):
        predict.predict(str(head_dir), [image])
    np.savez(head_dir / "head.npz", **{**arrays, "kernel_0": arrays["kernel_0"][:, :2]})
    with pytest.raises(ValueError, match=r"Expected .*head.npz to map \(512,\) features to 3 classes"):
        predict.predict(str(head_dir), [image])


def _head_with_weights_file(heads, tmp_path, weights_file):
    """A copy of the softmax head that says its features came from `weights_file`."""
    head_dir = tmp_path / "file_head"
    shutil.copytree(heads["softmax"], head_dir)
    with open(head_dir / "head_config.json") as f:
        config = json.load(f)
    config["weights"], config["weights_sha256"] = networks.weights_identity(weights_file)
    with open(head_dir / "head_config.json", "w") as f:
        json.dump(config, f)
    return str(head_dir)


def test_a_weights_file_head_needs_that_very_file(heads, tmp_path):
    spec = networks.get_network("vgg16")
    model = networks.build_feature_model(spec, "none", "avg", None, (32, 32), seed=0)  # The caches'.
    weights = str(tmp_path / "vgg16_random.weights.h5")
    model.save_weights(weights)
    head_dir = _head_with_weights_file(heads, tmp_path, weights)
    sha = networks.weights_identity(weights)[1]
    image = os.path.join(heads["dataset"], "val", "dog", "dog_1.png")
    with pytest.raises(ValueError, match=f"vgg16_random.weights.h5 \\(sha256 {sha}\\).*no --weights"):
        predict.predict(head_dir, [image])
    other = tmp_path / "other.weights.h5"
    other.write_bytes(b"not these weights")
    with pytest.raises(ValueError, match=f"vgg16_random.weights.h5 \\(sha256 {sha}\\).*other.weights.h5"):
        predict.predict(head_dir, [image], weights=str(other))
    with_file = predict.predict(head_dir, [image], weights=weights)
    seeded = predict.predict(heads["softmax"], [image])
    np.testing.assert_allclose(with_file[0].probabilities, seeded[0].probabilities, atol=1e-6)


def _command(*flags):
    return subprocess.run([sys.executable, "-m", "bottleneck_cache.bin.predict", *flags], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_command_errors_are_one_message_and_exit_1(tmp_path):
    result = _command(f"--head_dir={tmp_path}", f"--inputs={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("predict: error: Expected a head folder")
    assert "Traceback" not in result.stderr
    # Paths as arguments are inputs too, checked like --inputs.
    extra = _command(f"--head_dir={tmp_path}", f"--inputs={tmp_path}", "extra")
    assert extra.returncode == 1 and "predict: error: Expected a head folder" in extra.stderr
    none = _command(f"--head_dir={tmp_path}")
    assert none.returncode == 1
    assert none.stderr.strip().splitlines()[-1] == (
        "predict: error: Expected images or folders to classify, as arguments or with --inputs. "
        "Received: none. Run predict --help to see its usage.")


@pytest.mark.slow
def test_command_prints_top_classes_and_lists_skipped_images(heads, tmp_path):
    val = os.path.join(heads["dataset"], "val")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    result = _command(f"--head_dir={heads['softmax']}", "--top_k=2",
                      f"--dump_dir={tmp_path / 'dump'}", "--dump_count=1", val, str(bad))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == os.path.join(val, "cat", "cat_0.jpg")
    assert re.fullmatch(r"  [01]\.\d{4}  (cat|dog|fish)", lines[1])
    assert lines[3].startswith(f"  -> {tmp_path / 'dump'}")
    assert f"{bad}: skipped (" in result.stdout
    assert lines[-1].startswith("Skipped 1 of 7 images that could not be decoded: ")
    assert len(os.listdir(tmp_path / "dump")) == 1


def test_head_files_and_weights_are_checked_before_any_work(tmp_path):
    (tmp_path / "head_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"^Expected .*head_config\.json to be the JSON written by "
                       r"feature_extraction\. Received: .*\. Train the head again to rewrite it\.$"):
        predict.read_head_config(str(tmp_path))
    (tmp_path / "head.keras").write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match=r"^Expected .*head\.keras to be the head saved by feature_extraction\. "
                       r"Received: \w+: .*\. Train the head again\.$"):
        predict.load_head(str(tmp_path), {"head_file": "head.keras"})
    config = {"network": "vgg16", "weights": "file:mine.weights.h5", "weights_sha256": "ab12",
              "preprocessing": "rgb; resize=nearest; keras.applications.vgg16.preprocess_input"}
    with pytest.raises(ValueError, match=r"^Expected --weights=PATH to the weights file mine\.weights\.h5 "
                       r"\(sha256 ab12\), the file this head's features were extracted with\. Received: "
                       r"--weights=none\. Pass --weights=PATH to that file\.$"):
        predict.resolve_weights(config, "none")
    with pytest.raises(ValueError, match=r"^Expected this head's preprocessing 'rgb; resize=nearest; .*' to be "
                       r"the one vgg16 uses now\. Received: 'rgb; resize=bilinear; .*'\. Extract the features "
                       r"and train the head again with this version\.$"):
        predict.build_network(config)


def test_head_file_whose_layers_do_not_chain_is_refused(heads, tmp_path):
    from bottleneck_cache.classifiers import head_format  # pylint: disable=g-import-not-at-top

    with np.load(os.path.join(heads["softmax"], "head.npz")) as data:
        arrays = dict(data)
    np.savez(tmp_path / "head.npz", **{**arrays, "kernel_0": arrays["kernel_0"][:, :2]})
    with pytest.raises(ValueError, match=r"^Expected .*head\.npz to map \(512,\) features to 3 classes through its "
                       r"layers\. Received: kernels \[\(512, 2\)\], mean \(512,\), activations .*\. Train the head "
                       r"again\.$"):
        head_format.load(str(tmp_path / "head.npz"))


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"^Expected image files or folders\. Received: '.*missing\.jpg', which "
                       r"does not exist\. Check the path\.$"):
        predict.find_images([str(tmp_path / "missing.jpg")])
