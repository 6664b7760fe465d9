"""Tests of AlexNet (features/alexnet.py): architecture, LRN, groups, bvlc-alexnet.npy, every command."""

import os
import pickle

import numpy as np
import pytest

from bottleneck_cache.features import alexnet
from bottleneck_cache.features import engines
from bottleneck_cache.features import extraction
from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import cache

# The shapes of bvlc-alexnet.npy, Caffe's BVLC AlexNet as the lab's file holds it.
CONV_SHAPES = {
    "conv1": ((11, 11, 3, 96), (96,)), "conv2": ((5, 5, 48, 256), (256,)),
    "conv3": ((3, 3, 256, 384), (384,)), "conv4": ((3, 3, 192, 384), (384,)),
    "conv5": ((3, 3, 192, 256), (256,)),
}
FC_SHAPES = {"fc6": ((9216, 4096), (4096,)), "fc7": ((4096, 4096), (4096,)), "fc8": ((4096, 1000), (1000,))}


def synthetic_weights(layers, seed=0):
    """`{name: [W, b]}` of seeded random float32 arrays, as in bvlc-alexnet.npy."""
    rng = np.random.default_rng(seed)
    return {name: [rng.standard_normal(w, dtype=np.float32) * 0.01,
                   rng.standard_normal(b, dtype=np.float32) * 0.01]
            for name, (w, b) in layers.items()}


def save_npy(path, data):
    """Writes `data` as the lab's file is written: `np.save` of a dict (a pickled 0-d object array)."""
    np.save(path, data, allow_pickle=True)
    return str(path)


@pytest.fixture(scope="module")
def conv_npy(tmp_path_factory):
    """A bvlc-alexnet.npy holding conv1..conv5 only (enough for a model without its top)."""
    data = synthetic_weights(CONV_SHAPES)
    return save_npy(tmp_path_factory.mktemp("weights") / "bvlc-alexnet.npy", data), data


@pytest.fixture(autouse=True)
def _free_models():
    yield
    import keras

    keras.backend.clear_session(free_memory=True)


def test_lrn_matches_tensorflow():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(0, 30, size=(2, 5, 5, 16)).astype(np.float32)
    layer = alexnet.LocalResponseNormalization()
    expected = tf.nn.local_response_normalization(x, depth_radius=2, alpha=2e-5, beta=0.75, bias=1.0)
    np.testing.assert_allclose(np.asarray(layer(x)), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_lrn_is_serializable(tmp_path):
    import keras

    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, alexnet.LocalResponseNormalization(depth_radius=1, alpha=0.1, name="lrn")(inputs))
    path = str(tmp_path / "lrn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.get_layer("lrn")
    assert isinstance(layer, alexnet.LocalResponseNormalization)
    assert (layer.depth_radius, layer.alpha, layer.beta, layer.bias) == (1, 0.1, 0.75, 1.0)
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-6)


def test_grouped_conv_is_the_labs_split_convolution():
    """Conv2D(groups=2) with the file's (kh, kw, in/2, out) kernel computes the lab's `conv(group=2)`."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 7, 7, 8)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
    bias = rng.normal(size=(6,)).astype(np.float32)
    layer = keras.layers.Conv2D(6, 3, padding="same", groups=2)
    layer.build(x.shape)
    layer.set_weights([kernel, bias])
    # The lab's alexnet.py: split input and kernel in two along channels, convolve, concatenate.
    halves = [tf.nn.conv2d(i, k, [1, 1, 1, 1], padding="SAME")
              for i, k in zip(tf.split(x, 2, 3), tf.split(kernel, 2, 3))]
    expected = tf.nn.bias_add(tf.concat(halves, 3), bias).numpy()
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_registry_entry():
    spec = networks.get_network("AlexNet")
    assert (spec.name, spec.input_size, spec.min_input_size, spec.feature_dim) == ("alexnet", 227, 57, 256)
    assert spec.preprocessing == "rgb; resize=bilinear; keras.applications.vgg16.preprocess_input"
    images = np.full((1, 2, 2, 3), 100.0, np.float32)
    images[..., 0] = 200.0  # red
    # Caffe: BGR, minus the ImageNet mean pixel.
    np.testing.assert_allclose(spec.preprocess_input(images)[0, 0, 0],
                               [100 - 103.939, 100 - 116.779, 200 - 123.68], rtol=1e-6)


def test_conv_layers_and_pooled_outputs():
    spec = networks.get_network("alexnet")
    spatial = networks.build_feature_model(spec, "none", "none", input_size=(227, 227))
    names = [layer.name for layer in spatial.layers]
    assert names == ["input_layer", "conv1", "lrn1", "pool1", "conv2", "lrn2", "pool2", "conv3",
                     "conv4", "conv5", "pool5"]
    assert spatial.output_shape == (None, 6, 6, 256)
    assert spatial.get_layer("conv1").output.shape == (None, 57, 57, 96)
    assert networks.build_feature_model(spec, "none", "max", input_size=(227, 227)).output_shape == (None, 256)
    conv3 = networks.build_feature_model(spec, "none", "avg", layer="conv3", input_size=(96, 96))
    assert conv3.output_shape == (None, 384)
    assert networks.build_feature_model(spec, "none", "avg", input_size=(57, 57)).output_shape == (None, 256)
    with pytest.raises(ValueError):  # Keras' own check, one pixel below the registry's minimum
        alexnet.AlexNet(include_top=False, input_shape=(56, 56, 3))
    # fine_tune --unfreeze_blocks: each convolution is a block (the weightless LRN and pooling
    # before it belong to none, so a block starts where training does).
    from bottleneck_cache.classifiers import fine_tune  # pylint: disable=g-import-not-at-top

    assert fine_tune.block_names(spatial) == {
        "conv1": ["conv1"], "conv2": ["conv2"], "conv3": ["conv3"], "conv4": ["conv4"],
        "conv5": ["conv5"]}


def test_imagenet_weights_say_where_to_get_the_labs_file():
    with pytest.raises(networks.NetworkError, match=r"Keras has no ImageNet weights for AlexNet. Get "
                       r"the Udacity lab's bvlc-alexnet.npy .* pass --weights=PATH/bvlc-alexnet.npy"):
        networks.build_feature_model(networks.get_network("alexnet"), "imagenet", input_size=(67, 67))


def test_top_needs_227():
    with pytest.raises(networks.NetworkError, match=r"Layer 'fc7' is in the classifier top of "
                       r"alexnet, which needs the ImageNet input size 227. Received: input_size=67"):
        networks.build_feature_model(networks.get_network("alexnet"), "none", layer="fc7", input_size=(67, 67))
    with pytest.raises(networks.NetworkError, match=r"Expected inputs of 227x227x3 for AlexNet's fc layers. "
                       r"Received: input_shape=\(67, 67, 3\)"):
        alexnet.AlexNet(input_shape=(67, 67, 3))


def test_each_conv_layer_takes_its_array(conv_npy):
    path, data = conv_npy
    model = networks.build_feature_model(networks.get_network("alexnet"), path, "avg", input_size=(67, 67))
    for name in CONV_SHAPES:
        kernel, bias = model.get_layer(name).get_weights()
        np.testing.assert_array_equal(kernel, data[name][0])
        np.testing.assert_array_equal(bias, data[name][1])


def test_wrong_shape_is_refused_naming_the_layer_and_both_shapes(tmp_path):
    data = synthetic_weights(CONV_SHAPES)
    data["conv2"][0] = np.zeros((5, 5, 96, 256), np.float32)  # ungrouped: not Caffe's layout
    path = save_npy(tmp_path / "bvlc-alexnet.npy", data)
    with pytest.raises(networks.NetworkError, match=r"Expected conv2 weights of shapes \[\(5, 5, 48, "
                       rf"256\), \(256,\)\] \(W, b\) in {path}. Received: \[\(5, 5, 96, 256\), "
                       r"\(256,\)\]. The file is not Caffe's BVLC AlexNet"):
        networks.build_feature_model(networks.get_network("alexnet"), path, input_size=(67, 67))


def test_missing_layer_is_refused(tmp_path):
    data = synthetic_weights({k: v for k, v in CONV_SHAPES.items() if k != "conv4"})
    path = save_npy(tmp_path / "bvlc-alexnet.npy", data)
    with pytest.raises(networks.NetworkError, match=r"Expected .* to hold AlexNet's conv4 weights "
                       r"\[\(3, 3, 192, 384\), \(384,\)\]. Received: no 'conv4' key \(keys: conv1, "
                       r"conv2, conv3, conv5\)"):
        alexnet.load_npy_weights(alexnet.AlexNet(include_top=False, input_shape=(67, 67, 3)), path)


class _WritesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("kind, received", [
    ("array", r"a .npy file of a float32 array, not of a pickled dict"),
    ("list", r"an array of dtype object, shape \(2,\)"),
    ("pickled list", r"a list"),
    ("keys", r"a dict with keys \['conv1', 'weights'\]"),
    ("garbage", r"a file that is not a readable pickle"),
    ("code", r"a pickle that would call code \(it refers to io.open, which is not plain data\); it "
             r"was refused before anything in it ran"),
])
def test_wrong_files_are_refused(tmp_path, kind, received):
    path = str(tmp_path / "bvlc-alexnet.npy")
    victim = tmp_path / "created_by_the_pickle.txt"
    if kind == "array":
        np.save(path, np.zeros((2, 2), np.float32))
    elif kind == "list":
        save_npy(path, np.array([1, 2], dtype=object))
    elif kind == "pickled list":
        with open(path, "wb") as f:
            pickle.dump([1, 2], f)
    elif kind == "keys":
        save_npy(path, {"conv1": [], "weights": []})
    elif kind == "garbage":
        with open(path, "wb") as f:  # an object array's header, then no pickle
            np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
            f.write(b"junk")
    else:
        with open(path, "wb") as f:
            pickle.dump({"conv1": [_WritesAFile(str(victim))]}, f)
    with pytest.raises(networks.NetworkError, match=rf"Expected {path} to be the lab's "
                       rf"bvlc-alexnet.npy: a pickled dict .*Received: {received}"):
        alexnet.read_npy_weights(path)
    assert not victim.exists()


def test_a_plain_pickle_of_the_dict_is_read_too(tmp_path):
    data = synthetic_weights({"conv1": CONV_SHAPES["conv1"]})
    path = str(tmp_path / "alexnet_weights.npy")
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)
    read = alexnet.read_npy_weights(path)
    np.testing.assert_array_equal(read["conv1"][0], data["conv1"][0])


def _extract(dataset, output_dir, **kwargs):
    options = dict(network="alexnet", dataset_dir=dataset, output_dir=str(output_dir), input_size=67,
                   precision="float32")
    options.update(kwargs)
    return [cache.read_cache(result.path) for result in extraction.extract_features(**options)]


@pytest.mark.skipif(not engines.openvino_installed(), reason="openvino not installed")
def test_keras_and_openvino_engines_agree(folder_dataset, conv_npy, tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_HOME", str(tmp_path / "home"))
    path, _ = conv_npy
    ours = _extract(folder_dataset, tmp_path / "k", weights=path, engine="keras")
    theirs = _extract(folder_dataset, tmp_path / "ov", weights=path, engine="openvino")
    for a, b in zip(ours, theirs):
        assert a.feature_shape == (256,) and a.metadata.weights == "file:bvlc-alexnet.npy"
        assert (a.metadata.engine, b.metadata.engine) == ("keras", "openvino")
        np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_head_on_alexnet_features_predicts_exports_and_lists_layers(folder_dataset, conv_npy, tmp_path):
    import keras

    from bottleneck_cache.classifiers import batch
    from bottleneck_cache.classifiers import export
    from bottleneck_cache.classifiers import fine_tune
    from bottleneck_cache.classifiers import predict

    path, _ = conv_npy
    train, validation = _extract(folder_dataset, tmp_path / "caches", weights=path, engine="keras")
    head = str(tmp_path / "head")
    batch.train_heads(training_file=train.path, validation_file=validation.path, epochs=1,
                      batch_size=8, output_dir=head)
    predictions = predict.predict(head, [os.path.join(folder_dataset, "val")], weights=path)
    assert len(predictions) == 6 and all(p.top_k for p in predictions)
    name, rows = fine_tune.list_layers(head)
    assert name == "alexnet"
    assert [row[1] for row in rows if row[3] == "weights"] == list(CONV_SHAPES)
    output = str(tmp_path / "model.keras")
    export.export_model(head, output, weights=path)
    model = keras.models.load_model(output)  # the LRN layer is registered by classifiers.export
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 40, 50, 3)).astype(np.float32)
    assert model.predict_on_batch(images).shape == (2, 3)


@pytest.mark.slow
def test_full_file_fc7_features(folder_dataset, tmp_path):
    """The lab's use: `extract_features --network=alexnet --weights=bvlc-alexnet.npy --layer=fc7`."""
    from absl import flags
    from absl.testing import flagsaver

    from bottleneck_cache.bin import extract_features

    data = synthetic_weights({**CONV_SHAPES, **FC_SHAPES}, seed=1)
    path = save_npy(tmp_path / "bvlc-alexnet.npy", data)
    model = alexnet.AlexNet()
    alexnet.load_npy_weights(model, path)
    for name in alexnet.LAYER_NAMES:
        for stored, taken in zip(data[name], model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(taken, stored)
    assert model.count_params() == 60_965_224
    del model
    flags.FLAGS.mark_as_parsed()
    out = tmp_path / "out"
    with flagsaver.as_parsed(network="alexnet", dataset_dir=folder_dataset, weights=path, layer="fc7",
                             output_dir=str(out), engine="keras", precision="float32"):
        extract_features.main(["extract_features"])
    for split, count in (("train", 12), ("validation", 6)):
        loaded = cache.read_cache(str(out / f"alexnet_shapes_bottleneck_features_{split}.h5"))
        assert loaded.features.shape == (count, 4096)
        assert loaded.metadata.layer == "fc7" and loaded.metadata.input_size == (227, 227)
        assert np.isfinite(loaded.features).all() and (loaded.features >= 0).all()  # ReLU


def test_constructor_arguments_are_checked():
    with pytest.raises(networks.NetworkError, match=r"^Expected weights=None for AlexNet\. Received: "
                       r"weights='imagenet'\. Keras has no ImageNet weights for AlexNet"):
        alexnet.AlexNet(include_top=False, weights="imagenet", input_shape=(67, 67, 3))
    with pytest.raises(networks.NetworkError, match=r"^Expected AlexNet\(weights=None\)\. Received: "
                       r"weights='bvlc-alexnet\.npy'\. Build it with weights=None, then load bvlc-alexnet\.npy "
                       r"with load_npy_weights\(model, path\)\.$"):
        alexnet.AlexNet(include_top=False, weights="bvlc-alexnet.npy", input_shape=(67, 67, 3))
    with pytest.raises(networks.NetworkError, match=r"^Expected pooling to be None, 'avg' or 'max'\. Received: "
                       r"pooling='sum'\. Pass one of them \(--pooling=none, avg or max\)\.$"):
        alexnet.AlexNet(include_top=False, input_shape=(67, 67, 3), pooling="sum")
