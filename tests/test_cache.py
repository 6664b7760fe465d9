"""Tests of the HDF5 cache format: round trip, atomic writes, and every validation error."""

import dataclasses
import os
import re

import h5py
import numpy as np
import pytest

from bottleneck_cache.pipeline import cache


def make_metadata(**overrides):
    values = dict(
        network="vgg16", weights="none", weights_sha256="", layer="", pooling="avg",
        input_size=(32, 32), preprocessing="rgb; resize=bilinear; keras.applications.vgg16.preprocess_input",
        dataset="shapes", dataset_digest="abc", split="train", per_class=0, seed=0,
        library_versions='{"keras": "3"}',
    )
    values.update(overrides)
    return cache.CacheMetadata(**values)


def write_cache(path, num_samples=10, feature_shape=(4,), num_classes=3, block=3, metadata=None):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(num_samples, *feature_shape)).astype(np.float32)
    labels = np.arange(num_samples) % num_classes
    filenames = [f"img_{i}.jpg" for i in range(num_samples)]
    class_names = [f"class_{i}" for i in range(num_classes)]
    with cache.CacheWriter(path, metadata or make_metadata(), class_names, feature_shape) as writer:
        for start in range(0, num_samples, block):
            stop = start + block
            writer.append(features[start:stop], labels[start:stop], filenames[start:stop])
        writer.commit()
    return features, labels, filenames, class_names


def test_round_trip(tmp_path):
    path = str(tmp_path / "a.h5")
    features, labels, filenames, class_names = write_cache(path, feature_shape=(2, 2, 3))
    loaded = cache.read_cache(path)
    np.testing.assert_array_equal(loaded.features, features)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.filenames == tuple(filenames)
    assert loaded.class_names == tuple(class_names)
    assert loaded.metadata == make_metadata()
    assert loaded.feature_shape == (2, 2, 3)
    assert loaded.fingerprint == make_metadata().fingerprint()
    assert cache.read_metadata(path) == (make_metadata(), make_metadata().fingerprint())


def test_readable_with_plain_h5py(tmp_path):
    path = str(tmp_path / "a.h5")
    features, _, _, _ = write_cache(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "bottleneck-cache"
        assert f.attrs["format_version"] == cache.FORMAT_VERSION
        assert f.attrs["network"] == "vgg16"
        assert list(f.attrs["input_size"]) == [32, 32]
        assert bool(f.attrs["complete"])
        np.testing.assert_array_equal(f["features"][()], features)
        assert f["class_names"].asstr()[0] == "class_0"
        assert f["features"].chunks is not None


def test_fingerprint_covers_every_field():
    base = make_metadata()
    for field in dataclasses.fields(base):
        value = getattr(base, field.name)
        changed = (9, 9) if field.name == "input_size" else (value + 1 if isinstance(value, int)
                                                              else value + "x")
        assert make_metadata(**{field.name: changed}).fingerprint() != base.fingerprint(), field.name


def test_differences_names_fields():
    assert make_metadata().differences(make_metadata(network="resnet50", seed=1)) == [
        "network: 'vgg16' != 'resnet50'", "seed: 0 != 1"]


@pytest.mark.parametrize("split, per_class, expected", [
    ("train", 100, "vgg_cifar10_100_bottleneck_features_train.h5"),
    ("validation", 100, "vgg_cifar10_bottleneck_features_validation.h5"),
    ("train", None, "vgg_cifar10_bottleneck_features_train.h5"),
])
def test_cache_filename_follows_the_lab(split, per_class, expected):
    assert cache.cache_filename("VGG", "cifar10", split, per_class) == expected


def test_cache_filename_rejects_unknown_split():
    with pytest.raises(ValueError, match="Expected split to be one of"):
        cache.cache_filename("vgg", "cifar10", "test")


@pytest.mark.parametrize("network, dataset, split, per_class, augment_copies, expected", [
    ("VGG", "cifar10", "train", 100, 0, cache.CacheName("vgg_cifar10", "train", 100, 0)),
    ("vgg", "cifar10", "validation", 100, 4, cache.CacheName("vgg_cifar10", "validation")),
    ("mobilenet_v2", "my_data", "train", 10, 4, cache.CacheName("mobilenet_v2_my_data", "train", 10, 4)),
    ("resnet50", "cats_vs_dogs", "train", None, 2, cache.CacheName("resnet50_cats_vs_dogs", "train", 0, 2)),
    ("inception_v3", "gtsrb", "train", None, 0, cache.CacheName("inception_v3_gtsrb", "train")),
])
def test_parse_cache_filename_inverts_cache_filename(network, dataset, split, per_class,
                                                     augment_copies, expected):
    name = cache.cache_filename(network, dataset, split, per_class, augment_copies)
    parsed = cache.parse_cache_filename(os.path.join("some", "folder", name))
    assert parsed == expected
    assert parsed.filename == name
    assert parsed.run_name == name[: -len(f"_bottleneck_features_{split}.h5")]


def test_parse_cache_filename_reads_a_lab_pickle_name():
    parsed = cache.parse_cache_filename("lab/vgg_traffic_100_bottleneck_features_train.p")
    assert parsed == cache.CacheName("vgg_traffic", "train", 100, 0, ".p")
    assert parsed.run_name == "vgg_traffic_100"


@pytest.mark.parametrize("name", [
    "train.h5", "vgg_bottleneck_features_train.h5", "vgg_cifar10_bottleneck_features_test.h5",
    "vgg_cifar10_bottleneck_features_train.hdf5", "vgg_cifar10_100_bottleneck_features_train",
])
def test_parse_cache_filename_refuses_another_name(name):
    with pytest.raises(cache.CacheError, match=(
            r"Expected a cache file named <network>_<dataset>\[_<per_class>\]\[_aug<K>\]"
            r"_bottleneck_features_<train\|validation>\.h5 \(or \.p for a lab pickle\), e\.g\. "
            rf"vgg_cifar10_100_bottleneck_features_train\.h5\. Received: {re.escape(name)}\. Pass "
            "the file extract_features wrote")):
        cache.parse_cache_filename(os.path.join("folder", name))


@pytest.mark.parametrize("path, expected", [
    ("c/vgg_cifar10_100_aug4_bottleneck_features_train.h5", "vgg_cifar10_100_aug4"),
    ("lab/vgg_cifar10_bottleneck_features_validation.p", "vgg_cifar10"),
    ("c/my_features.h5", "my_features"),
    ("c/my_features.p", "my_features"),
    ("c/my_features.hdf5", "my_features.hdf5"),
])
def test_run_name(path, expected):
    assert cache.run_name(path) == expected


def test_working_file_names(tmp_path):
    path = str(tmp_path / "vgg_cifar10_bottleneck_features_train.h5")
    assert cache.shard_filename(path, 4, 1) == str(
        tmp_path / "vgg_cifar10_bottleneck_features_train-00001-of-00004.h5")
    folder = cache.parts_folder(path, "0123456789abcdef0123")
    assert folder == str(tmp_path / ".vgg_cifar10_bottleneck_features_train.h5.0123456789abcdef.parts")
    assert cache.is_parts_folder(os.path.basename(folder), path)
    assert not cache.is_parts_folder(os.path.basename(folder), str(tmp_path / "other.h5"))
    assert not cache.is_parts_folder(".vgg_cifar10_bottleneck_features_train.h5.x.tmp", path)
    assert cache.part_filename(folder, 0, 256) == os.path.join(folder, "part-0000000000-0000000256.h5")


def test_failed_write_leaves_target_and_no_temporary(tmp_path):
    path = str(tmp_path / "a.h5")
    features, _, _, _ = write_cache(path)
    with pytest.raises(RuntimeError, match="boom"):
        with cache.CacheWriter(path, make_metadata(seed=5), ["x", "y"], (4,)) as writer:
            writer.append(np.ones((1, 4)), [0], ["a"])
            raise RuntimeError("boom")
    np.testing.assert_array_equal(cache.read_cache(path).features, features)
    assert os.listdir(tmp_path) == ["a.h5"]


def test_uncommitted_file_is_never_at_the_target(tmp_path):
    path = str(tmp_path / "a.h5")
    with cache.CacheWriter(path, make_metadata(), ["x", "y"], (4,)) as writer:
        writer.append(np.ones((1, 4)), [0], ["a"])
        assert not os.path.exists(path)
        (temporary,) = os.listdir(tmp_path)
        assert temporary.startswith(".a.h5.") and temporary.endswith(".tmp")
    assert not os.listdir(tmp_path)


def test_skipped_samples_round_trip(tmp_path):
    path = str(tmp_path / "a.h5")
    with cache.CacheWriter(path, make_metadata(), ["x", "y"], (2,)) as writer:
        writer.append(np.ones((2, 2)), [0, 1], ["a.jpg", "b.jpg"])
        writer.skip(["c.jpg"], ["cannot identify image file"])
        writer.append(np.zeros((1, 2)), [1], ["d.jpg"])
        writer.commit()
    loaded = cache.read_cache(path)
    assert loaded.filenames == ("a.jpg", "b.jpg", "d.jpg")
    assert loaded.labels.tolist() == [0, 1, 1]
    assert loaded.skipped == (("c.jpg", "cannot identify image file"),)
    info = cache.verify_cache(path)
    assert (info.num_samples, info.num_skipped) == (3, 1)


def test_writer_keeps_rows_in_step(tmp_path):
    with cache.CacheWriter(str(tmp_path / "a.h5"), make_metadata(), ["x", "y"], (4,)) as writer:
        with pytest.raises(cache.CacheError, match=r"Expected one label, filename and view per feature row "
                           r"for .*a.h5. Received: 2 rows, 1 labels, 2 filenames, 2 views"):
            writer.append(np.ones((2, 4)), [0], ["a", "b"])
        with pytest.raises(cache.CacheError, match=r"Expected labels in \[0, 2\).*Received: label 2"):
            writer.append(np.ones((1, 4)), [2], ["a"])
        assert writer.num_rows == 0


def test_writer_refuses_non_finite_features(tmp_path):
    path = str(tmp_path / "a.h5")
    with pytest.raises(cache.CacheError, match=r"non-finite feature \(NaN or inf\) for b\. "
                       r"Expected finite values; nothing was written to"):
        with cache.CacheWriter(path, make_metadata(), ["x", "y"], (2,)) as writer:
            writer.append(np.array([[1.0, 2.0], [np.nan, 0.0]]), [0, 1], ["a", "b"])
    assert not os.listdir(tmp_path)


def test_written_file_is_not_private(tmp_path):
    path = str(tmp_path / "a.h5")
    write_cache(path)
    assert os.stat(path).st_mode & 0o044  # readable by group or others under a usual umask


def edit(path, function):
    with h5py.File(path, "a") as f:
        function(f)


def _set_attr(name, value):
    return lambda f: f.attrs.__setitem__(name, value)


def _replace_dataset(name, data):
    def function(f):
        del f[name]
        f[name] = data
    return function


@pytest.mark.parametrize("corruption, message", [
    (_set_attr("format", "something-else"), "is not a bottleneck cache: expected attribute format"),
    (_set_attr("format_version", 99), "has cache format version 99; this version of bottleneck-cache reads version 2"),
    (_set_attr("format_version", "1"), "has cache format version '1'; this version of bottleneck-cache reads version 2"),
    (_set_attr("format_version", [1, 1]), r"has cache format version array\(\[1, 1\]\)"),
    (lambda f: f.__delitem__("features"), "dataset `features` is missing"),
    (lambda f: f.__delitem__("filenames"), "dataset `filenames` is missing"),
    (lambda f: f.__delitem__("class_names"), "dataset `class_names` is missing"),
    (lambda f: f.__delitem__("skipped_reasons"), "dataset `skipped_reasons` is missing"),
    (_replace_dataset("skipped_reasons", np.array([b"why"])), "one entry of `skipped_reasons` per entry of `skipped_filenames`"),
    (lambda f: (f.__delitem__("features"), f.create_group("features")), "dataset `features` is missing"),
    (_set_attr("input_size", 32), r"expected attribute `input_size` to be a list of integers. Received: 32"),
    (_set_attr("seed", "0"), r"expected attribute `seed` to be int. Received: '0'"),
    (_set_attr("network", 5), r"expected attribute `network` to be str. Received: 5"),
    (_replace_dataset("features", np.zeros((10, 4), dtype=np.int8)), r"expected float32 `features` of shape \(num_samples, \*feature_shape\); received int8"),
    (_replace_dataset("features", np.zeros(10, dtype=np.float32)), r"expected float32 `features`.*received float32 \(10,\)"),
    (_replace_dataset("labels", np.full(10, 1.7)), r"expected integer `labels` of shape \(num_samples,\); received float64"),
    (_replace_dataset("class_names", np.array([b"a", b"a", b"b"])), r"expected unique class names; received \['a', 'a', 'b'\]"),
    (_replace_dataset("filenames", np.array([b"x"] * 9)), r"received lengths \{'features': 10, 'labels': 10, 'views': 10, 'filenames': 9\}"),
    (_set_attr("complete", False), "is incomplete: its extraction did not finish. Run the same extract_features"),
    (lambda f: f.__delitem__("labels"), "dataset `labels` is missing"),
    (lambda f: f.attrs.__delitem__("pooling"), "attribute `pooling` is missing"),
    (_set_attr("network", "resnet50"), "fingerprint that does not match its attributes"),
    (_replace_dataset("labels", np.arange(4)), r"received lengths \{'features': 10, 'labels': 4, 'views': 10, 'filenames': 10\}"),
    (_replace_dataset("labels", np.full(10, 7)), r"Expected labels in \[0, 3\).*Received: label 7"),
    (_replace_dataset("labels", np.full(10, -1)), r"Expected labels in \[0, 3\).*Received: label -1"),
    (lambda f: f["features"].__setitem__((6, 1), np.nan), r"non-finite feature \(NaN or inf\) in row 6 \(img_6.jpg\)"),
    (lambda f: f["features"].__setitem__((2, 0), np.inf), r"non-finite feature .* in row 2"),
    (_replace_dataset("class_names", np.array([[b"a", b"b", b"c"]])),
     r"a\.h5 is corrupt: expected 1-D `class_names` and `filenames`\. Extract it again with extract_features"),
    (_replace_dataset("views", np.zeros(10, dtype=np.float32)),
     r"is corrupt: expected integer `views` of shape \(num_samples,\); received float32 \(10,\)\. Extract it again"),
    (_replace_dataset("filenames", np.array([b"x"] * 9)),
     r"expected `features`, `labels` and `filenames` to have one row per sample; received lengths "
     r"\{'features': 10, 'labels': 10, 'views': 10, 'filenames': 9\}"),
])
def test_read_validates(tmp_path, corruption, message):
    path = str(tmp_path / "a.h5")
    write_cache(path)
    edit(path, corruption)
    with pytest.raises(cache.CacheError, match=message):
        cache.read_cache(path)
    with pytest.raises(cache.CacheError, match=message):
        cache.verify_cache(path)


def test_read_missing_file(tmp_path):
    with pytest.raises(cache.CacheError, match="does not exist. Expected a file written by extract_features"):
        cache.read_cache(str(tmp_path / "missing.h5"))


def test_read_truncated_file(tmp_path):
    path = str(tmp_path / "a.h5")
    write_cache(path, num_samples=2000, feature_shape=(64,))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(cache.CacheError, match="(not a readable HDF5 file|is corrupt)"):
        cache.read_cache(path)


def test_read_not_hdf5(tmp_path):
    path = tmp_path / "a.h5"
    path.write_bytes(b"\x80\x04 this is a pickle, not HDF5")
    with pytest.raises(cache.CacheError, match="is not a readable HDF5 file"):
        cache.read_cache(str(path))


def test_empty_split_round_trips(tmp_path):
    path = str(tmp_path / "a.h5")
    write_cache(path, num_samples=0)
    assert cache.read_cache(path).features.shape == (0, 4)


def test_flipped_bit_in_features_is_detected(tmp_path):
    path = str(tmp_path / "a.h5")
    write_cache(path, num_samples=8, feature_shape=(512,))
    with h5py.File(path, "r") as f:
        offset = f["features"].id.get_chunk_info(0).byte_offset
    data = bytearray(open(path, "rb").read())
    data[offset + 2] ^= 0x80
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(cache.CacheError, match=r"is corrupt: reading `features` failed .* its checksum "
                       "or storage is damaged"):
        cache.read_cache(path)


def test_writer_stops_before_the_disk_is_full(tmp_path, monkeypatch):
    path = str(tmp_path / "a.h5")
    write_cache(path)
    before = cache.read_cache(path).features

    class Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda folder: Full)
    with pytest.raises(OSError, match=r"No space left to write .*a.h5: 40 KiB free, about \d+ KiB "
                       r"needed .* an older cache there is intact"):
        write_cache(path, metadata=make_metadata(seed=3))
    monkeypatch.undo()
    np.testing.assert_array_equal(cache.read_cache(path).features, before)
    assert os.listdir(tmp_path) == ["a.h5"]


def test_merge_refuses_a_whole_cache_as_a_part(tmp_path):
    path = str(tmp_path / "whole.h5")
    write_cache(path)
    metadata, _ = cache.read_metadata(path)
    with pytest.raises(cache.CacheError, match=r"whole\.h5 is a whole cache, not a part: expected attribute "
                       r"`part_samples` = \(start, stop, total\)\. Merge only the part files"):
        cache.merge_parts([path], str(tmp_path / "merged.h5"), metadata, (0, 10, 10))
    assert not os.path.exists(tmp_path / "merged.h5")
