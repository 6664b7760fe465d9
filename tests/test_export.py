"""Tests of `classifiers.export` and the `export_model` command: one model from raw images."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from bottleneck_cache.classifiers import export
from bottleneck_cache.classifiers import predict
from tests.test_predict import CLASSES
from tests.test_predict import ROOT
from tests.test_predict import legacy_head
from tests.test_predict import trained_heads


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    return trained_heads(tmp_path_factory)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Images at the heads' input size (32x32) and at other sizes, in two folders."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for folder, sizes in (("exact", [(32, 32)]), ("other", [(20, 24), (61, 45), (240, 180)])):
        os.makedirs(root / folder)
        for height, width in sizes:
            for label in range(3):
                pixels = rng.integers(0, 60, size=(height, width, 3)) + 60 * label
                Image.fromarray(pixels.astype(np.uint8)).save(
                    root / folder / f"{height}x{width}_{label}.png")
    return {folder: str(root / folder) for folder in ("exact", "other")}


def raw_images(results):
    """Each result's image, as decoded at its own size: a list of `(1, h, w, 3)` uint8 arrays."""
    return [np.asarray(Image.open(result.path).convert("RGB"))[None] for result in results]


def exported_probabilities(model, arrays):
    return np.concatenate([np.asarray(model.predict_on_batch(array)) for array in arrays])


@pytest.mark.parametrize("head", ["softmax", pytest.param("logreg", marks=pytest.mark.slow)])
def test_exported_model_is_the_two_stage_path_on_raw_images(heads, images, tmp_path, head):
    output = str(tmp_path / "model.keras")
    result = export.export_model(heads[head], output)
    assert result["class_names"] == CLASSES and result["input_size"] == [32, 32]
    assert "vgg16 + " + head in export.format_summary(result)
    model = keras.models.load_model(output)  # No custom_objects: importing export registered them.
    assert export.class_names(model) == CLASSES
    assert model.input_shape == (None, None, None, 3) and model.output_shape == (None, 3)
    # Images at the input size: resizing is the identity, so both paths agree to rounding.
    exact = predict.predict(heads[head], [images["exact"]])
    np.testing.assert_allclose(exported_probabilities(model, raw_images(exact)),
                               np.stack([r.probabilities for r in exact]), atol=1e-5)
    # uint8 and float32 inputs are the same.
    array = raw_images(exact)[0]
    np.testing.assert_array_equal(model.predict_on_batch(array),
                                  model.predict_on_batch(array.astype(np.float32)))
    # Other sizes: in-graph antialiased bilinear resizing is Pillow's to within a grey level.
    # The head standardizes its features, dividing each by its training spread, which for
    # random-weight VGG16 features of 12 tiny images is small: a grey level's difference in
    # the image moves the probabilities by a few hundredths (5e-3 before standardization).
    other = predict.predict(heads[head], [images["other"], os.path.join(heads["dataset"], "val")])
    expected = np.stack([r.probabilities for r in other])
    received = exported_probabilities(model, raw_images(other))
    np.testing.assert_array_equal(received.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(received, expected, atol=6e-2)


def test_logreg_of_an_earlier_version_becomes_an_exact_dense_softmax(heads):
    """A `head.joblib` (scikit-learn pipeline) written before head.npz still exports exactly."""
    from bottleneck_cache.classifiers import heads as heads_module  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top

    train, validation = (cache.read_cache(path) for path in heads["caches"])
    pipeline = heads_module.build_logreg().fit(train.features.reshape(len(train.labels), -1),
                                               train.labels)
    dense = export.logreg_as_keras(pipeline, validation.feature_shape, 3)
    np.testing.assert_allclose(np.asarray(dense.predict_on_batch(validation.features)),
                               pipeline.predict_proba(validation.features.reshape(6, -1)), atol=1e-5)


@pytest.mark.parametrize("kind", ["keras", "joblib"])
def test_heads_of_earlier_versions_still_export(heads, tmp_path, kind):

    head_dir = legacy_head(heads, tmp_path, kind)
    model, _ = export.build_export_model(head_dir)
    exact = predict.predict(head_dir, [os.path.join(heads["dataset"], "val")])
    arrays = raw_images(exact)
    received = exported_probabilities(model, arrays)
    expected = np.stack([r.probabilities for r in exact])
    np.testing.assert_array_equal(received.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(received, expected, atol=5e-3)  # Unstandardized: as before.


def test_logreg_conversion_binary_and_missing_classes():
    from bottleneck_cache.classifiers import heads as heads_module  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 4, 2)) * [1, 10] + [0, 5]
    labels = np.where(features[:, 0, 0] > 0, 3, 1)  # Two of four classes; 0 and 2 never seen.
    pipeline = heads_module.build_logreg().fit(features.reshape(40, -1), labels)
    model = export.logreg_as_keras(pipeline, (4, 2), 4)
    expected = np.zeros((40, 4))
    expected[:, pipeline.classes_] = pipeline.predict_proba(features.reshape(40, -1))
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(features)), expected, atol=1e-5)


def test_preprocessing_layer_is_each_networks_own():
    import importlib  # pylint: disable=g-import-not-at-top

    pixels = np.random.default_rng(1).integers(0, 256, size=(2, 5, 7, 3)).astype(np.float32)
    for module in ("vgg16", "resnet", "mobilenet_v2", "inception_v3", "densenet", "efficientnet",
                   "convnext"):
        layer = export.NetworkPreprocessing(module)
        restored = export.NetworkPreprocessing.from_config(layer.get_config())
        expected = importlib.import_module(f"keras.applications.{module}").preprocess_input(pixels.copy())
        np.testing.assert_allclose(np.asarray(restored(pixels)), expected, atol=1e-5, err_msg=module)


def test_bad_arguments_are_one_clear_error(heads, tmp_path):
    with pytest.raises(ValueError, match="Expected --output to be a .keras file"):
        export.export_model(heads["softmax"], str(tmp_path / "model.h5"))
    with pytest.raises(ValueError, match="Expected a head folder"):
        export.export_model(str(tmp_path), str(tmp_path / "model.keras"))
    with pytest.raises(ValueError, match="Expected a model written by export_model"):
        export.class_names(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]))
    assert not os.path.exists(tmp_path / "model.keras")


@pytest.mark.slow
def test_saved_model_serves_the_same_probabilities(heads, images, tmp_path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    output, saved = str(tmp_path / "model.keras"), str(tmp_path / "saved")
    export.export_model(heads["softmax"], output, saved_model_dir=saved)
    served = tf.saved_model.load(saved)
    model = keras.models.load_model(output)
    for array in raw_images(predict.predict(heads["softmax"], [images["other"]])):
        np.testing.assert_allclose(np.asarray(served.serve(array.astype(np.float32))),
                                   np.asarray(model.predict_on_batch(array)), atol=1e-6)
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []


def _command(*flags):
    return subprocess.run([sys.executable, "-m", "bottleneck_cache.bin.export_model", *flags], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_command_errors_are_one_message_and_exit_1(tmp_path):
    result = _command(f"--head_dir={tmp_path}", f"--output={tmp_path / 'model.keras'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("export_model: error: Expected a head folder")
    usage = _command(f"--head_dir={tmp_path}")
    assert usage.returncode == 1 and "--output" in usage.stderr


@pytest.mark.slow
def test_command_writes_the_model(heads, tmp_path):
    output = tmp_path / "out" / "model.keras"
    result = _command(f"--head_dir={heads['logreg']}", f"--output={output}")
    assert result.returncode == 0, result.stderr
    assert f"Wrote {output}: vgg16 + logreg head" in result.stdout
    assert export.class_names(keras.models.load_model(str(output))) == CLASSES


def test_class_names_of_a_model_not_exported_here():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="dense")], name="plain")
    with pytest.raises(ValueError, match=r"^Expected a model written by export_model, with a ClassNames layer\. "
                       r"Received: 'plain' with layers dense\. Pass a model\.keras that export_model wrote\.$"):
        export.class_names(model)
