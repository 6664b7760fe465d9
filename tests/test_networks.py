"""Tests of the network registry, parametrized over every entry."""

import dataclasses
import os

import numpy as np
import pytest

from bottleneck_cache.features import networks

# Built in the default run; the others take several seconds each and are `slow`.
FAST = {"vgg16", "vgg19", "mobilenet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
        "resnet50", "resnet50_v2", "inception_v3", "xception", "efficientnet_b0", "densenet121",
        "convnext_tiny", "alexnet"}
ALL = networks.list_networks()


@pytest.fixture(autouse=True)
def _free_models():
    """Drops each test's models: the registry tests build dozens of networks."""
    yield
    import keras

    keras.backend.clear_session(free_memory=True)


def _build_params():
    return [pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in ALL]


def test_registry_covers_every_keras_family():
    import keras

    constructors = {n for n in dir(keras.applications) if n[0].isupper()}
    specs = [networks.get_network(n) for n in ALL]
    assert {s.constructor_name for s in specs if s.constructor_module == "keras.applications"} == constructors
    # Networks Keras lacks are built by this package (features/alexnet.py).
    assert {s.name for s in specs if s.constructor_module != "keras.applications"} == {"alexnet"}


@pytest.mark.parametrize("name", ALL)
def test_entry_is_consistent(name):
    spec = networks.get_network(name)
    assert spec.name == name
    assert callable(spec.constructor)
    assert callable(spec.preprocess_input)
    assert spec.min_input_size <= spec.input_size
    assert spec.module_name in spec.preprocessing
    # The Keras class name finds the same entry.
    assert networks.get_network(spec.constructor_name).name == name


@pytest.mark.parametrize("name", _build_params())
def test_builds_frozen_model_with_registered_feature_dim(name):
    spec = networks.get_network(name)
    size = (spec.min_input_size, spec.min_input_size)
    model = networks.build_feature_model(spec, weights="none", pooling="avg", input_size=size)
    assert not model.trainable
    images = np.random.default_rng(0).uniform(0, 255, size=(2, *size, 3)).astype(np.float32)
    features = np.asarray(model.predict_on_batch(spec.preprocess_input(images)))
    assert features.shape == (2, spec.feature_dim)
    assert np.isfinite(features).all()


@pytest.mark.parametrize("alias, name", [("vgg", "vgg16"), ("resnet", "resnet50"),
                                         ("inception", "inception_v3"), ("VGG", "vgg16"),
                                         ("MobileNetV2", "mobilenet_v2"), ("mobilenetv2", "mobilenet_v2"),
                                         ("EfficientNetV2S", "efficientnet_v2_s")])
def test_names_and_aliases(alias, name):
    assert networks.get_network(alias).name == name


def test_unknown_network_lists_valid_names():
    with pytest.raises(networks.NetworkError, match=r"Unknown network 'googlenet'. Expected one of: "
                       r"alexnet, convnext_base, .*vgg16, vgg19, xception \(or the aliases inception, resnet, vgg\)"):
        networks.get_network("googlenet")


def test_list_networks_wildcards():
    assert networks.list_networks("resnet*") == [
        "resnet101", "resnet101_v2", "resnet152", "resnet152_v2", "resnet50", "resnet50_v2"]


@pytest.mark.parametrize("name", ["vgg16", "inception_v3", "xception"])
def test_min_input_size_is_the_minimum(name):
    spec = networks.get_network(name)
    below = (spec.min_input_size - 1, spec.min_input_size - 1)
    with pytest.raises(ValueError):  # Keras' own check, one pixel below ours
        spec.constructor(weights=None, include_top=False, input_shape=(*below, 3))


def test_input_size():
    spec = networks.get_network("inception_v3")
    assert networks.resolve_input_size(spec) == (299, 299)
    assert networks.resolve_input_size(spec, 96) == (96, 96)
    with pytest.raises(networks.NetworkError, match=r"inception_v3 needs inputs of at least 75x75 "
                       r"pixels. Received: input_size=32. Pass --input_size=75 or larger."):
        networks.resolve_input_size(spec, 32)


def test_pooling_options():
    spec = networks.get_network("vgg16")
    assert networks.build_feature_model(spec, "none", "max", input_size=(32, 32)).output_shape == (None, 512)
    assert networks.build_feature_model(spec, "none", "none", input_size=(64, 64)).output_shape == (
        None, 2, 2, 512)
    with pytest.raises(networks.NetworkError, match=r"Expected pooling to be one of \('avg', 'max', "
                       r"'none'\). Received: pooling='mean'"):
        networks.build_feature_model(spec, "none", "mean", input_size=(32, 32))


def test_layer_from_the_top_needs_default_size():
    spec = networks.get_network("vgg16")
    model = networks.build_feature_model(spec, "none", "avg", layer="fc1", input_size=(224, 224))
    assert model.output_shape == (None, 4096)
    with pytest.raises(networks.NetworkError, match="Layer 'fc1' is in the classifier top of vgg16, "
                       "which needs the ImageNet input size 224. Received: input_size=32"):
        networks.build_feature_model(spec, "none", "avg", layer="fc1", input_size=(32, 32))


def test_inner_layer_is_pooled():
    spec = networks.get_network("vgg16")
    pooled = networks.build_feature_model(spec, "none", "avg", layer="block4_pool", input_size=(32, 32))
    assert pooled.output_shape == (None, 512)
    spatial = networks.build_feature_model(spec, "none", "none", layer="block4_pool", input_size=(32, 32))
    assert spatial.output_shape == (None, 2, 2, 512)


def test_unknown_layer_lists_layers():
    spec = networks.get_network("vgg16")
    with pytest.raises(networks.NetworkError, match="vgg16 has no layer named 'fc9'. Expected one of: "
                       "input_layer.*block1_conv1.*fc1, fc2, predictions"):
        networks.build_feature_model(spec, "none", "avg", layer="fc9", input_size=(224, 224))


def test_weights_file_round_trip(tmp_path):
    spec = networks.get_network("mobilenet")
    model = networks.build_feature_model(spec, "none", "avg", input_size=(32, 32))
    path = str(tmp_path / "mine.weights.h5")
    model.save_weights(path)
    identity, digest = networks.weights_identity(path)
    assert identity == "file:mine.weights.h5" and len(digest) == 64
    loaded = networks.build_feature_model(spec, path, "avg", input_size=(32, 32))
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_random_weights_are_seeded():
    spec = networks.get_network("mobilenet")

    def weights(seed):
        return networks.build_feature_model(spec, "none", "avg", input_size=(32, 32),
                                            seed=seed).get_weights()

    first, again, other = weights(3), weights(3), weights(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_weights_file_of_another_network(tmp_path):
    path = str(tmp_path / "vgg.weights.h5")
    networks.build_feature_model(networks.get_network("vgg16"), "none", input_size=(32, 32)).save_weights(path)
    with pytest.raises(networks.NetworkError, match=rf"Could not load weights from {path} into "
                       r"MobileNet\(include_top=False\).*Expected a Keras weights file saved from "
                       "that architecture without its top"):
        networks.build_feature_model(networks.get_network("mobilenet"), path, input_size=(32, 32))


def test_missing_weights_file():
    with pytest.raises(networks.NetworkError, match="Expected --weights to be 'imagenet', 'none', or a "
                       "path to a weights file. Received: 'nope.h5', which is not a file."):
        networks.weights_identity("nope.h5")


def test_failed_download_says_which_file_to_put_where(tmp_path, monkeypatch):
    # This machine has no internet; elsewhere, simulate the failure Keras reports.
    from keras.src.utils import file_utils

    def offline(fname=None, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected = os.path.join(str(tmp_path), "models", "mobilenet_1_0_128_tf_no_top.h5")
    with pytest.raises(networks.NetworkError, match=(
            r"Could not download the ImageNet weights for mobilenet: Keras wanted "
            r"mobilenet_1_0_128_tf_no_top.h5 from https://\S+/mobilenet_1_0_128_tf_no_top.h5 .*"
            rf"Either put that file at {expected} .*or pass --weights=PATH")):
        networks.build_feature_model(networks.get_network("mobilenet"), "imagenet", input_size=(128, 128))


@pytest.mark.parametrize("name", networks.list_networks())
def test_numpy_preprocessing_equals_keras_bit_for_bit(name):
    import importlib  # pylint: disable=g-import-not-at-top

    spec = networks.get_network(name)
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 8, 8, 3)).astype(np.float32)
    keras_module = importlib.import_module(f"keras.applications.{spec.module_name}")
    expected = np.asarray(keras_module.preprocess_input(images.copy()))
    got = spec.preprocess_input(images.copy())
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_extraction_preprocessing_does_not_import_tensorflow():
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top

    code = ("import sys, numpy as np; from features import networks; "
            "x = np.zeros((1, 4, 4, 3), np.float32); "
            "[networks.get_network(n).preprocess_input(x) for n in networks.list_networks()]; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_constructor_error_says_what_was_asked():
    # A spec that lets 16x16 through where Keras' VGG16 needs 32x32: Keras' own error is passed on.
    spec = dataclasses.replace(networks.get_network("vgg16"), min_input_size=8)
    with pytest.raises(networks.NetworkError, match=r"^Expected keras\.applications\.VGG16\(weights=None, "
                       r"include_top=False, input_shape=\(16, 16, 3\), pooling='avg'\) to build the network\. "
                       r"Received: ValueError: .*32.* Check --input_size, --layer and --weights for vgg16\.$"):
        networks.build_feature_model(spec, weights="none", input_size=(16, 16))


def test_lookup_messages_say_how_to_fix_them(tmp_path):
    with pytest.raises(networks.NetworkError, match=r"^Unknown network 'googlenet'\. Expected one of: .*\(or the "
                       r"aliases inception, resnet, vgg\)\. Pass one of them, e\.g\. --network=mobilenet_v2\.$"):
        networks.get_network("googlenet")
    with pytest.raises(networks.NetworkError, match=r"Received: 'nope\.h5', which is not a file\. Check the path, "
                       r"or pass --weights=imagenet or --weights=none\.$"):
        networks.weights_identity("nope.h5")
    path = str(tmp_path / "vgg.weights.h5")
    networks.build_feature_model(networks.get_network("vgg16"), "none", input_size=(32, 32)).save_weights(path)
    with pytest.raises(networks.NetworkError, match=r"Expected a Keras weights file saved from that architecture "
                       r"without its top\. Pass the weights file of mobilenet \(model\.save_weights\(\) of the "
                       r"same constructor\)\.$"):
        networks.build_feature_model(networks.get_network("mobilenet"), path, input_size=(32, 32))
    with pytest.raises(networks.NetworkError, match=r"^vgg16 has no layer named 'fc9'\. Expected one of: .*fc1, fc2, "
                       r"predictions\. Pass --layer=<one of them>, or leave --layer out for the pooled last block\.$"):
        networks.build_feature_model(networks.get_network("vgg16"), "none", "avg", layer="fc9", input_size=(224, 224))


def test_input_size_messages_say_what_is_expected():
    spec = networks.get_network("vgg16")
    with pytest.raises(networks.NetworkError, match=r"^Expected --input_size >= 32: vgg16 needs inputs of at least "
                       r"32x32 pixels\. Received: input_size=8\. Pass --input_size=32 or larger\.$"):
        networks.resolve_input_size(spec, 8)
    with pytest.raises(networks.NetworkError, match=r"^Expected no --input_size \(or 224\) for --layer=fc1\. Layer "
                       r"'fc1' is in the classifier top of vgg16, which needs the ImageNet input size 224\. "
                       r"Received: input_size=32\. Drop --input_size or pick another layer\.$"):
        networks.build_feature_model(spec, "none", "avg", layer="fc1", input_size=(32, 32))
