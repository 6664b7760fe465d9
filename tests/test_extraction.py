"""Tests of stage one, `features.extraction.extract_features`, on tiny synthetic images."""

import os

import numpy as np
import pytest

from bottleneck_cache.features import extraction
from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import datasets


def extract(folder_dataset, output_dir, **kwargs):
    options = dict(network="vgg16", dataset_dir=folder_dataset, output_dir=str(output_dir),
                   weights="none", input_size=32, batch_size=4)
    options.update(kwargs)
    return extraction.extract_features(**options)


def test_writes_both_splits_in_step_with_the_dataset(folder_dataset, tmp_path):
    spec = networks.get_network("vgg16")
    model = networks.build_feature_model(spec, "none", "avg", input_size=(32, 32))
    weights = str(tmp_path / "vgg16.weights.h5")
    model.save_weights(weights)
    results = extract(folder_dataset, tmp_path, weights=weights)
    assert [(r.split, os.path.basename(r.path), r.num_samples, r.reused) for r in results] == [
        ("train", "vgg16_shapes_bottleneck_features_train.h5", 12, False),
        ("validation", "vgg16_shapes_bottleneck_features_validation.h5", 6, False),
    ]
    splits = datasets.prepare_splits(folder_dataset)
    for result in results:
        split = splits[result.split]
        loaded = cache.read_cache(result.path)
        assert loaded.filenames == split.ids
        np.testing.assert_array_equal(loaded.labels, split.labels)
        assert loaded.class_names == ("cat", "dog", "fish")
        # Each row holds the features of its own image, computed the documented way.
        images = split.load(np.arange(len(split)), (32, 32)).astype(np.float32)
        expected = np.asarray(model.predict_on_batch(spec.preprocess_input(images)))
        np.testing.assert_allclose(loaded.features, expected, rtol=1e-4, atol=1e-5)
        metadata = loaded.metadata
        assert (metadata.network, metadata.weights, metadata.pooling, metadata.input_size,
                metadata.split, metadata.dataset) == ("vgg16", "file:vgg16.weights.h5", "avg", (32, 32),
                                                      result.split, "shapes")
        assert metadata.preprocessing.endswith("keras.applications.vgg16.preprocess_input")
        assert '"keras"' in metadata.library_versions


def test_network_runs_in_inference_mode(folder_dataset, tmp_path):
    # With BatchNorm in training mode, a row's features would depend on its batch.
    spec = networks.get_network("resnet50")
    model = networks.build_feature_model(spec, "none", "avg", input_size=(32, 32))
    weights = str(tmp_path / "resnet50.weights.h5")
    model.save_weights(weights)
    one = extract(folder_dataset, tmp_path / "one", network="resnet50", weights=weights, batch_size=1)
    many = extract(folder_dataset, tmp_path / "many", network="resnet50", weights=weights, batch_size=5)
    for a, b in zip(one, many):
        features = cache.read_cache(a.path).features
        assert np.abs(features).mean() > 0.1
        np.testing.assert_allclose(features, cache.read_cache(b.path).features, rtol=1e-4, atol=1e-4)


def test_same_settings_reuse_the_cache(folder_dataset, tmp_path):
    first = extract(folder_dataset, tmp_path)
    mtimes = [os.stat(r.path).st_mtime_ns for r in first]
    second = extract(folder_dataset, tmp_path)
    assert [r.reused for r in second] == [True, True]
    assert [os.stat(r.path).st_mtime_ns for r in second] == mtimes


def test_other_settings_need_overwrite(folder_dataset, tmp_path):
    extract(folder_dataset, tmp_path)
    with pytest.raises(cache.CacheError, match=r"already holds a cache made with other settings: "
                       r"pooling: 'avg' != 'max' \(existing != requested\)\. Pass --overwrite"):
        extract(folder_dataset, tmp_path, pooling="max")
    results = extract(folder_dataset, tmp_path, pooling="max", overwrite=True)
    assert [cache.read_cache(r.path).metadata.pooling for r in results] == ["max", "max"]


def test_changed_dataset_is_not_silently_reused(folder_dataset, tmp_path):
    extract(folder_dataset, tmp_path)
    os.remove(os.path.join(folder_dataset, "train", "cat", "cat_0.jpg"))
    with pytest.raises(cache.CacheError, match="dataset_digest"):
        extract(folder_dataset, tmp_path)


def test_changed_image_is_not_silently_reused(folder_dataset, tmp_path):
    extract(folder_dataset, tmp_path)
    from PIL import Image

    Image.new("RGB", (20, 24), "white").save(os.path.join(folder_dataset, "val", "dog", "dog_0.jpg"))
    with pytest.raises(cache.CacheError, match=r"bottleneck_features_validation.h5 already holds a "
                       r"cache made with other settings: dataset_digest"):
        extract(folder_dataset, tmp_path)


def test_overwrite_replaces_a_damaged_cache_with_the_same_fingerprint(folder_dataset, tmp_path):
    import h5py

    results = extract(folder_dataset, tmp_path)
    with h5py.File(results[0].path, "a") as f:
        f["features"][3, 0] = np.nan
    with pytest.raises(cache.CacheError, match=r"non-finite feature .* in row 3.*\(Or pass --overwrite"):
        extract(folder_dataset, tmp_path)
    again = extract(folder_dataset, tmp_path, overwrite=True)
    assert [r.reused for r in again] == [False, False]
    assert np.isfinite(cache.read_cache(again[0].path).features).all()


def test_per_class_runs_share_the_validation_cache(folder_dataset, tmp_path):
    weights = str(tmp_path / "vgg16.weights.h5")
    networks.build_feature_model(networks.get_network("vgg16"), "none", input_size=(32, 32)).save_weights(weights)
    output = tmp_path / "out"
    first = extract(folder_dataset, output, per_class=2, seed=1, weights=weights)
    second = extract(folder_dataset, output, per_class=3, seed=2, weights=weights)
    assert first[1].path == second[1].path and second[1].reused
    metadata = cache.read_cache(second[1].path).metadata
    assert (metadata.per_class, metadata.seed) == (0, 0)
    assert cache.read_cache(second[0].path).metadata.seed == 2


def test_random_weights_record_their_seed(folder_dataset, tmp_path):
    results = extract(folder_dataset, tmp_path, seed=7)
    assert [cache.read_cache(r.path).metadata.seed for r in results] == [7, 7]


def test_network_name_cannot_leave_the_output_dir(folder_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"Expected --network to be letters.*Received: network='../vgg16'"):
        extract(folder_dataset, tmp_path / "out", network="../vgg16")
    assert sorted(os.listdir(tmp_path)) == ["shapes"]


def test_file_names_use_the_canonical_name_or_the_lab_alias(folder_dataset, tmp_path):
    assert os.path.basename(extract(folder_dataset, tmp_path, network="VGG16")[0].path) == (
        "vgg16_shapes_bottleneck_features_train.h5")
    assert os.path.basename(extract(folder_dataset, tmp_path, network="VGG")[0].path) == (
        "vgg_shapes_bottleneck_features_train.h5")


def test_a_file_that_is_not_a_cache_is_never_replaced(folder_dataset, tmp_path):
    # A damaged cache is replaced with --overwrite (tests/test_output_safety.py); a user's file
    # under a cache's name is not, with or without it.
    path = tmp_path / "vgg16_shapes_bottleneck_features_train.h5"
    path.write_bytes(b"not a cache")
    for overwrite in (False, True):
        with pytest.raises(cache.CacheError, match=r"Expected .*train.h5 to be a cache this tool "
                           r"wrote, or nothing. Received: a file that is not HDF5, which --overwrite "
                           r"does not replace. Move it away, or choose another --output_dir."):
            extract(folder_dataset, tmp_path, overwrite=overwrite)
        assert path.read_bytes() == b"not a cache"


def test_per_class_names_only_the_training_file(folder_dataset, tmp_path):
    results = extract(folder_dataset, tmp_path, per_class=2, network="vgg")
    assert [os.path.basename(r.path) for r in results] == [
        "vgg_shapes_2_bottleneck_features_train.h5", "vgg_shapes_bottleneck_features_validation.h5"]
    assert [r.num_samples for r in results] == [6, 6]
    assert cache.read_cache(results[0].path).metadata.per_class == 2


def test_layer_and_no_pooling(folder_dataset, tmp_path):
    results = extract(folder_dataset, tmp_path, layer="block3_pool", pooling="none")
    loaded = cache.read_cache(results[0].path)
    assert loaded.feature_shape == (4, 4, 256)
    assert loaded.metadata.layer == "block3_pool"


def test_validation_split_when_dataset_has_none(tmp_path):
    from tests.conftest import write_folder_dataset

    root = write_folder_dataset(tmp_path / "flat", per_class=5)
    results = extract(root, tmp_path / "out", validation_split=0.2)
    assert [r.num_samples for r in results] == [12, 3]


def _break_images(folder_dataset):
    """Replaces two images with a truncated JPEG and a text file; returns their ids."""
    with open(os.path.join(folder_dataset, "val", "dog", "dog_0.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff truncated")
    with open(os.path.join(folder_dataset, "train", "cat", "cat_1.png"), "w") as f:
        f.write("not an image")
    return "train/cat/cat_1.png", "val/dog/dog_0.jpg"


def test_bad_images_are_skipped_and_listed(folder_dataset, tmp_path, caplog):
    bad_train, bad_val = _break_images(folder_dataset)
    results = extract(folder_dataset, tmp_path)
    assert [(r.num_samples, r.num_skipped) for r in results] == [(11, 1), (5, 1)]
    for result, bad in zip(results, (bad_train, bad_val)):
        loaded = cache.read_cache(result.path)
        assert bad not in loaded.filenames
        assert [name for name, _ in loaded.skipped] == [bad]
        assert bad in loaded.skipped[0][1]  # the reason names the file
        # Rows stay in step: every kept row's label is its own image's.
        splits = datasets.prepare_splits(folder_dataset)
        expected = dict(zip(splits[result.split].ids, splits[result.split].labels))
        assert [expected[name] for name in loaded.filenames] == loaded.labels.tolist()
    assert f"Skipped {bad_train}" in caplog.text
    assert [r.reused for r in extract(folder_dataset, tmp_path)] == [True, True]


def test_bad_image_fails_on_request_and_writes_nothing(folder_dataset, tmp_path):
    _break_images(folder_dataset)
    output = tmp_path / "out"
    with pytest.raises(datasets.DatasetError, match="cat_1.png"):
        extract(folder_dataset, output, on_bad_image="fail")
    assert not output.exists() or not os.listdir(output)


def test_all_images_bad_is_an_error(tmp_path):
    root = tmp_path / "broken"
    for name in ("a", "b"):
        os.makedirs(root / name)
        (root / name / "x.jpg").write_bytes(b"junk")
        (root / name / "y.jpg").write_bytes(b"junk")
    with pytest.raises(datasets.DatasetError, match=r"Every image of samples \[0, 2\) of the train split failed to decode"):
        extract(str(root), tmp_path / "out", validation_split=0.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(network="googlenet"), "Unknown network 'googlenet'"),
    (dict(batch_size=0), r"Expected batch_size >= 1. Received: batch_size=0"),
    (dict(per_class=0), r"Expected per_class >= 1 \(or unset for all\). Received: per_class=0"),
    (dict(dataset="my/data"), r"Expected --dataset to be letters, digits.*Received: dataset='my/data'"),
    (dict(pooling="sum"), "Expected pooling to be one of"),
    (dict(input_size=8), "vgg16 needs inputs of at least 32x32 pixels"),
    (dict(weights="missing.weights.h5"), "Expected --weights to be 'imagenet', 'none', or a path"),
    (dict(on_bad_image="ignore"), r"Expected on_bad_image to be one of \('skip', 'fail'\)"),
])
def test_bad_arguments_write_nothing(folder_dataset, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        extract(folder_dataset, tmp_path / "out", **kwargs)
    assert not os.path.exists(tmp_path / "out")


def test_default_dataset_name():
    assert extraction.default_dataset_name(None) == "digits"
    assert extraction.default_dataset_name("/data/cifar10/") == "cifar10"
