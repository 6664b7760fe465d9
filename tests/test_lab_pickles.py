"""Tests of the Udacity lab's bottleneck pickles as stage-two input, and of import_pickle."""

import os
import pickle

import numpy as np
import pytest

from bottleneck_cache.classifiers import batch
from bottleneck_cache.classifiers import training
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import lab_pickles


def write_lab_pickle(folder, name, num_samples=12, dim=8, num_classes=10, label_shape="column",
                     seed=0):
    """Writes a pickle in the lab's exact layout: features (N, 1, 1, D) float32, labels (N, 1) or (N,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples) % num_classes
    features = (rng.normal(size=(num_samples, 1, 1, dim)) + labels[:, None, None, None]).astype(np.float32)
    labels = labels.reshape(-1, 1) if label_shape == "column" else labels
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        pickle.dump({"features": features, "labels": labels.astype(np.uint8)}, f)
    return path, features, labels


TRAIN = "vgg_cifar10_100_bottleneck_features_train.p"
VALIDATION = "vgg_cifar10_bottleneck_features_validation.p"


@pytest.fixture
def lab_pair(tmp_path):
    train, _, _ = write_lab_pickle(str(tmp_path), TRAIN, num_samples=40, seed=1)
    validation, _, _ = write_lab_pickle(str(tmp_path), VALIDATION, num_samples=20, seed=2)
    return train, validation


class _WritesAFile:
    """Unpickling this would create `path` (as a hostile pickle could run any command)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name, expected", [
    (TRAIN, ("vgg16", "cifar10", 100, "train")),
    (VALIDATION, ("vgg16", "cifar10", 0, "validation")),
    ("resnet_traffic_100_bottleneck_features_train.p", ("resnet50", "traffic", 100, "train")),
    ("inception_traffic_bottleneck_features_validation.p", ("inception_v3", "traffic", 0, "validation")),
    ("mobilenet_v2_my_data_10_bottleneck_features_train.p", ("mobilenet_v2", "my_data", 10, "train")),
    ("mystery_flowers_bottleneck_features_train.p", ("mystery", "flowers", 0, "train")),
])
def test_names_follow_the_lab_pattern(name, expected):
    assert lab_pickles.parse_name(os.path.join("some", "folder", name)) == expected


@pytest.mark.parametrize("name", ["train.p", "vgg_bottleneck_features_train.p",
                                  "vgg_cifar10_bottleneck_features_test.p"])
def test_name_off_the_pattern_is_refused(name):
    with pytest.raises(cache.CacheError, match=r"Expected a Udacity lab bottleneck pickle named "
                       r"\{network\}_\{dataset\}\[_\{N\}\]_bottleneck_features_\{train,validation\}\.p "
                       rf".*Received: {name}\. Rename the file"):
        lab_pickles.parse_name(name)


@pytest.mark.parametrize("label_shape", ["column", "flat"])
def test_read_cache_takes_a_lab_pickle(tmp_path, label_shape):
    path, features, labels = write_lab_pickle(str(tmp_path), TRAIN, label_shape=label_shape)
    loaded = cache.read_cache(path)
    np.testing.assert_array_equal(loaded.features, features.reshape(12, 8))
    np.testing.assert_array_equal(loaded.labels, labels.reshape(-1))
    assert loaded.labels.dtype == np.int64 and loaded.features.dtype == np.float32
    assert loaded.feature_shape == (8,)
    assert loaded.class_names[:3] == ("airplane", "automobile", "bird") and len(loaded.class_names) == 10
    assert loaded.filenames[0] == f"{TRAIN}:0" and len(set(loaded.filenames)) == 12
    assert loaded.skipped == () and not loaded.views.any()
    metadata = loaded.metadata
    assert (metadata.network, metadata.dataset, metadata.per_class, metadata.split) == (
        "vgg16", "cifar10", 100, "train")
    assert metadata.weights == "unknown (Udacity lab pickle)" == lab_pickles.UNKNOWN
    assert (metadata.pooling, metadata.preprocessing, metadata.engine) == (lab_pickles.UNKNOWN,) * 3
    assert cache.read_metadata(path) == (metadata, metadata.fingerprint()) == (metadata, loaded.fingerprint)


def test_class_names_by_dataset(tmp_path):
    traffic, _, _ = write_lab_pickle(str(tmp_path), "vgg_traffic_bottleneck_features_train.p",
                                     num_samples=43, num_classes=43)
    names = cache.read_cache(traffic).class_names
    assert len(names) == 43 and names[0] == "Speed limit (20km/h)" and names[14] == "Stop"
    other, _, _ = write_lab_pickle(str(tmp_path), "vgg_shapes_bottleneck_features_train.p", num_classes=4)
    assert cache.read_cache(other).class_names == ("0", "1", "2", "3")


def test_label_outside_the_dataset_classes_is_refused(tmp_path):
    path, _, _ = write_lab_pickle(str(tmp_path), TRAIN, num_samples=12, num_classes=12)
    with pytest.raises(cache.CacheError, match=rf"Expected {path} to be a Udacity lab bottleneck "
                       r"pickle.*Received: label 11, outside \[0, 10\) for the 10 classes of "
                       r"dataset 'cifar10'"):
        cache.read_cache(path)


def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    victim = tmp_path / "created_by_the_pickle.txt"
    path = str(tmp_path / TRAIN)
    with open(path, "wb") as f:
        pickle.dump({"features": np.zeros((2, 1, 1, 3), np.float32), "labels": _WritesAFile(str(victim))}, f)
    for read in (cache.read_cache, cache.read_metadata, lambda p: lab_pickles.import_lab_pickles([p])):
        with pytest.raises(cache.CacheError, match=rf"Expected {path} to be a Udacity lab bottleneck "
                           r"pickle.*Received: a pickle that would call code \(it refers to "
                           r"io.open, which is not plain data\); it was refused before "
                           r"anything in it ran"):
            read(path)
        assert not victim.exists()
    assert not os.path.exists(lab_pickles.cache_path(path))


@pytest.mark.parametrize("payload, received", [
    ([1, 2, 3], "a pickled list"),
    ({"features": np.zeros((2, 1, 1, 3), np.float32)}, r"a dict with keys \['features'\]"),
    ({"features": np.zeros((2, 1, 1, 3), np.float32), "labels": np.zeros(2, np.int64), "x": 1},
     r"a dict with keys \['features', 'labels', 'x'\]"),
    ({"features": [[0.0]], "labels": np.zeros(1, np.int64)}, "`features` is a list"),
    ({"features": np.zeros((2, 3), np.float32), "labels": np.zeros(2, np.float32)},
     "`labels` is a float32 array"),
    ({"features": np.zeros((2, 1, 1, 3), np.float32), "labels": np.zeros(3, np.int64)},
     r"`features` of shape \(2, 1, 1, 3\) with `labels` of shape \(3,\)"),
    ({"features": np.zeros(4, np.float32), "labels": np.zeros(4, np.int64)},
     r"`features` of shape \(4,\)"),
    ({"features": np.full((2, 3), np.nan, np.float32), "labels": np.zeros(2, np.int64)},
     r"a non-finite feature \(NaN or inf\) in row 0"),
])
def test_anything_but_the_lab_dict_is_refused(tmp_path, payload, received):
    path = str(tmp_path / TRAIN)
    with open(path, "wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(cache.CacheError, match=rf"Expected {path} to be a Udacity lab bottleneck "
                       rf"pickle: a dict .*Received: {received}"):
        cache.read_cache(path)


def test_unreadable_and_missing_files(tmp_path):
    path = tmp_path / TRAIN
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(cache.CacheError, match=r"Received: a file that is not a readable pickle "
                       r"\(UnpicklingError"):
        cache.read_cache(str(path))
    missing = str(tmp_path / VALIDATION)
    with pytest.raises(cache.CacheError, match=rf"Lab pickle {missing} does not exist"):
        cache.read_metadata(missing)


def test_a_pair_trains_a_head(lab_pair, tmp_path):
    train, validation = lab_pair
    rows, summary = batch.train_heads(training_file=train, validation_file=validation, epochs=2,
                                      batch_size=16, output_dir=str(tmp_path / "run"))
    assert len(rows) == 1 and not rows[0].get("error")
    assert "val_accuracy=" in summary
    assert os.path.isfile(tmp_path / "run" / "head_config.json")


def test_a_pair_whose_names_disagree_is_refused(tmp_path):
    train, _, _ = write_lab_pickle(str(tmp_path), TRAIN)
    validation, _, _ = write_lab_pickle(str(tmp_path), "resnet_cifar10_bottleneck_features_validation.p")
    with pytest.raises(ValueError, match=r"The training and validation caches differ in network: "
                       r"'vgg16' in .*, 'resnet50' in .*resnet_cifar10"):
        training.check_pair(cache.read_cache(train), cache.read_cache(validation))
    with pytest.raises(ValueError, match=r"Expected a validation cache from the same extraction as "
                       rf".*{TRAIN} \(network=vgg16, dataset=cifar10"):
        batch.pair_caches([train], [validation])


def test_globs_pair_the_lab_files(tmp_path):
    folder = str(tmp_path)
    for network in ("vgg", "resnet"):
        for dataset in ("cifar10", "traffic"):
            classes = 43 if dataset == "traffic" else 10
            write_lab_pickle(folder, f"{network}_{dataset}_100_bottleneck_features_train.p", num_classes=classes)
            write_lab_pickle(folder, f"{network}_{dataset}_bottleneck_features_validation.p",
                             num_classes=classes, seed=3)
    trains = batch.expand_files(os.path.join(folder, "*_train.p"), "training_file")
    validations = batch.expand_files(os.path.join(folder, "*_validation.p"), "validation_file")
    pairs = batch.pair_caches(trains, validations)
    assert len(pairs) == 4
    for train, validation in pairs:
        assert os.path.basename(train).split("_")[:2] == os.path.basename(validation).split("_")[:2]


def test_import_writes_regular_caches_with_the_provenance(lab_pair, tmp_path):
    train, validation = lab_pair
    out = tmp_path / "caches"
    results = lab_pickles.import_lab_pickles([train, validation], output_dir=str(out))
    assert [os.path.basename(output) for _, output, _ in results] == [
        "vgg_cifar10_100_bottleneck_features_train.h5", "vgg_cifar10_bottleneck_features_validation.h5"]
    for source, output, _ in results:
        direct, converted = cache.read_cache(source), cache.read_cache(output)
        assert converted.metadata == direct.metadata
        np.testing.assert_array_equal(converted.features, direct.features)
        np.testing.assert_array_equal(converted.labels, direct.labels)
        assert (converted.filenames, converted.class_names) == (direct.filenames, direct.class_names)
        assert cache.verify_cache(output).num_samples == len(direct.labels)
    assert "40 samples, features (8,), 10 classes (vgg16, cifar10, train)" in lab_pickles.format_summary(results)


def test_import_refuses_to_overwrite_without_the_flag(lab_pair, tmp_path):
    train, _ = lab_pair
    lab_pickles.import_lab_pickles([train])
    output = lab_pickles.cache_path(train)
    assert output == train[:-2] + ".h5"
    with pytest.raises(ValueError, match=rf"Received: '{output}', which exists. Pass --overwrite"):
        lab_pickles.import_lab_pickles([train])
    lab_pickles.import_lab_pickles([train], overwrite=True)
    with open(output, "wb") as f:
        f.write(b"a user's file")
    with pytest.raises(ValueError, match="which is not one"):
        lab_pickles.import_lab_pickles([train], overwrite=True)
    assert open(output, "rb").read() == b"a user's file"


def test_import_pickle_command(lab_pair, tmp_path, capsys):
    from absl import flags
    from absl.testing import flagsaver

    from bottleneck_cache.bin import import_pickle

    flags.FLAGS.mark_as_parsed()

    pattern = os.path.join(os.path.dirname(lab_pair[0]), "*.p")
    with flagsaver.as_parsed(pickles=pattern, output_dir=str(tmp_path / "out")):
        import_pickle.main(["import_pickle"])
    out = capsys.readouterr().out
    assert out.count(" -> ") == 2 and "20 samples" in out
    assert sorted(os.listdir(tmp_path / "out")) == [
        "vgg_cifar10_100_bottleneck_features_train.h5", "vgg_cifar10_bottleneck_features_validation.h5"]
    with flagsaver.as_parsed(pickles=pattern, output_dir=str(tmp_path / "out")):
        with pytest.raises(SystemExit) as exit_info:
            import_pickle.main(["import_pickle"])
    assert exit_info.value.code == 1
    assert "import_pickle: error: Expected the output cache to be a new file" in capsys.readouterr().err


def test_the_labs_exact_command(lab_pair, tmp_path, capsys, monkeypatch):
    """`feature_extraction --training_file vgg_cifar10_100_…_train.p --validation_file vgg_cifar10_…_validation.p`."""
    from absl import flags
    from absl.testing import flagsaver

    from bottleneck_cache.bin import feature_extraction

    flags.FLAGS.mark_as_parsed()
    monkeypatch.chdir(os.path.dirname(lab_pair[0]))
    with flagsaver.as_parsed(training_file=TRAIN, validation_file=VALIDATION, epochs="2"):
        feature_extraction.main(["feature_extraction"])
    out = capsys.readouterr().out
    assert "epoch 1/2" in out.lower() and "epoch 2/2" in out.lower()  # the per-epoch log
    assert "head=softmax  classes=10  train=40  validation=20  features=(8,)" in out
    assert "val_accuracy=" in out


def test_import_pickle_help_and_stray_arguments():
    import subprocess
    import sys

    from absl import app

    from bottleneck_cache.bin import import_pickle

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-m", "bottleneck_cache.bin.import_pickle", "--help"], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("Converts the Udacity lab's bottleneck pickles")
    assert "--pickles" in result.stdout and "--overwrite" in result.stdout
    with pytest.raises(app.UsageError, match="Too many command-line arguments: stray"):
        import_pickle.main(["import_pickle", "stray"])


def test_import_refuses_a_pickle_named_twice(lab_pair, tmp_path):
    train, _ = lab_pair
    with pytest.raises(ValueError, match=r"^Expected one pickle per output cache\. Received: .*_train\.p, "
                       r".*_train\.p, some of them twice\.$"):
        lab_pickles.import_lab_pickles([train, train])
    assert not os.path.exists(lab_pickles.cache_path(train))
