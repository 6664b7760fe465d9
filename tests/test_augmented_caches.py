"""Tests of cached augmentation: `extract_features(augment_copies=K)` and stage two on its caches."""

import dataclasses
import os

import numpy as np
import pytest

from bottleneck_cache.classifiers import training
from bottleneck_cache.features import extraction
from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import augment
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import datasets


def extract(folder_dataset, output_dir, **kwargs):
    options = dict(network="mobilenet_v2", dataset_dir=folder_dataset, output_dir=str(output_dir),
                   weights="none", input_size=32, engine="keras", precision="float32",
                   augment_copies=2, augmentations="flip,crop,color", seed=3)
    options.update(kwargs)
    return extraction.extract_features(**options)


def test_views_are_marked_and_tied_to_their_image(folder_dataset, tmp_path):
    train, validation = (cache.read_cache(r.path) for r in extract(folder_dataset, tmp_path))
    split = datasets.prepare_splits(folder_dataset)["train"]
    assert len(train.filenames) == 3 * len(split)
    assert sorted(np.bincount(train.views)) == [len(split)] * 3
    for view in (0, 1, 2):
        rows = train.views == view
        assert sorted(np.asarray(train.filenames)[rows]) == sorted(split.ids)
    # A view's label is its image's.
    label_of = dict(zip(split.ids, split.labels))
    assert all(label_of[name] == label for name, label in zip(train.filenames, train.labels))
    assert (train.metadata.augment_copies, train.metadata.augmentations) == (2, "flip,crop,color")
    assert not validation.views.any() and validation.metadata.augment_copies == 0
    assert validation.metadata.augmentations == ""


def test_views_are_the_documented_transforms(folder_dataset, tmp_path):
    (train, _) = (cache.read_cache(r.path) for r in extract(folder_dataset, tmp_path, batch_size=5))
    split = datasets.prepare_splits(folder_dataset)["train"]
    spec = networks.get_network("mobilenet_v2")
    import keras  # pylint: disable=g-import-not-at-top

    keras.utils.set_random_seed(3)
    model = networks.build_feature_model(spec, "none", "avg", input_size=(32, 32))
    images = split.load(np.arange(len(split)), (32, 32))
    views = augment.augment_batch(images, ("flip", "crop", "color"), 3, np.arange(len(split)), 2)
    expected = np.asarray(model.predict_on_batch(spec.preprocess_input(views.astype(np.float32))))
    rows = {name: i for i, (name, view) in enumerate(zip(train.filenames, train.views)) if view == 2}
    got = train.features[[rows[name] for name in split.ids]]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    first = {name: i for i, (name, view) in enumerate(zip(train.filenames, train.views)) if view == 0}
    originals = train.features[[first[name] for name in split.ids]]
    assert not np.allclose(originals, got, rtol=1e-2, atol=0)


def test_checkpointed_and_batched_runs_write_the_same_views(folder_dataset, tmp_path):
    one = extract(folder_dataset, tmp_path / "one", batch_size=12)
    parts = extract(folder_dataset, tmp_path / "parts", batch_size=2, checkpoint_every=5)
    a, b = cache.read_cache(one[0].path), cache.read_cache(parts[0].path)
    order_a = sorted(range(len(a.filenames)), key=lambda i: (a.filenames[i], a.views[i]))
    order_b = sorted(range(len(b.filenames)), key=lambda i: (b.filenames[i], b.views[i]))
    np.testing.assert_allclose(a.features[order_a], b.features[order_b], rtol=1e-4, atol=1e-5)


def test_augmented_and_plain_caches_sit_side_by_side(folder_dataset, tmp_path):
    augmented = extract(folder_dataset, tmp_path)
    plain = extract(folder_dataset, tmp_path, augment_copies=0)
    assert os.path.basename(augmented[0].path) == "mobilenet_v2_shapes_aug2_bottleneck_features_train.h5"
    assert os.path.basename(plain[0].path) == "mobilenet_v2_shapes_bottleneck_features_train.h5"
    # They share the validation cache, which augmentation does not touch.
    assert plain[1].path == augmented[1].path and plain[1].reused


def test_augmentation_is_part_of_the_fingerprint(folder_dataset, tmp_path):
    extract(folder_dataset, tmp_path)
    with pytest.raises(ValueError, match=r"augmentations: 'flip,crop,color' != 'flip' \(existing != requested\)"):
        extract(folder_dataset, tmp_path, augmentations="flip")


@pytest.mark.parametrize("kwargs, message", [
    (dict(augment_copies=-1), r"Expected augment_copies >= 0. Received: augment_copies=-1"),
    (dict(augmentations=""), r"Expected --augmentations with --augment_copies=2"),
    (dict(augmentations="flip,blur"), r"Expected --augmentations to be a comma-separated list of "
                                      r"flip, crop, zoom, color. Received: 'flip,blur' \('blur' is not one of them\)"),
])
def test_bad_augmentation_options_write_nothing(folder_dataset, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        extract(folder_dataset, tmp_path / "out", **kwargs)
    assert not os.path.exists(tmp_path / "out")


def test_a_head_trains_on_views_and_refuses_augmented_validation(folder_dataset, tmp_path):
    train_path, validation_path = (r.path for r in extract(folder_dataset, tmp_path / "caches"))
    result = training.train_head(train_path, validation_path, output_dir=str(tmp_path / "head"),
                                 head="logreg")
    assert 0.0 <= result["val_accuracy"] <= 1.0
    # A validation cache with views: written by hand, since extract_features never makes one.
    validation = cache.read_cache(validation_path)
    metadata = dataclasses.replace(validation.metadata, augment_copies=1,
                                   augmentations="flip")
    forged = str(tmp_path / "forged_validation.h5")
    with cache.CacheWriter(forged, metadata, validation.class_names,
                           validation.feature_shape) as writer:
        writer.append(validation.features, validation.labels, validation.filenames,
                      np.ones(len(validation.labels)))
        writer.commit()
    with pytest.raises(ValueError, match=r"Expected a validation cache of the images themselves. "
                                         r"Received: .*forged_validation.h5 holds augmented views"):
        training.train_head(train_path, forged, output_dir=str(tmp_path / "head2"), head="logreg")
    assert not os.path.exists(tmp_path / "head2")
