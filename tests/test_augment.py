"""Tests for `pipeline.augment`: random image transforms for cached augmentation."""

import numpy as np
import pytest

from bottleneck_cache.pipeline import augment

ALL = augment.TRANSFORMS


def gradient_images(n=4, height=16, width=20):
    """Returns `(n, height, width, 3)` uint8 images, asymmetric so flips and crops show."""
    rows = np.linspace(0, 255, height)[:, None]
    columns = np.linspace(0, 255, width)[None, :]
    images = []
    for i in range(n):
        red = columns * np.ones_like(rows)
        green = rows * np.ones_like(columns)
        blue = (rows + columns) / 2 + 10 * i
        images.append(np.stack([red, green, np.clip(blue, 0, 255)], axis=-1))
    return np.rint(images).astype(np.uint8)


@pytest.mark.parametrize("transforms", [(), ("flip",), ("crop",), ("zoom",), ("color",), ALL])
def test_shape_and_dtype_preserved(transforms):
    images = gradient_images(n=3, height=12, width=17)
    output = augment.augment_batch(images, transforms, seed=0, sample_indices=np.arange(3), copy_index=1)
    assert output.shape == images.shape
    assert output.dtype == np.uint8
    assert output.flags.writeable


def test_augment_image_returns_new_array_and_leaves_input_alone():
    image = gradient_images(n=1)[0]
    before = image.copy()
    for transforms in [(), ("flip",), ALL]:
        output = augment.augment_image(image, transforms, np.random.default_rng(1))
        assert output.shape == image.shape and output.dtype == np.uint8
        assert not np.shares_memory(output, image)
    np.testing.assert_array_equal(image, before)


def test_no_transforms_is_identity():
    images = gradient_images()
    output = augment.augment_batch(images, (), seed=3, sample_indices=np.arange(4), copy_index=2)
    np.testing.assert_array_equal(output, images)


def test_deterministic_regardless_of_batch_composition_and_order():
    images = gradient_images(n=6)
    indices = np.array([10, 11, 12, 13, 14, 15])
    whole = augment.augment_batch(images, ALL, seed=7, sample_indices=indices, copy_index=2)
    order = np.array([4, 1, 5, 0, 3, 2])
    shuffled = augment.augment_batch(images[order], ALL, 7, sample_indices=indices[order], copy_index=2)
    np.testing.assert_array_equal(shuffled, whole[order])
    for i in range(6):
        alone = augment.augment_batch(images[i : i + 1], ALL, 7, indices[i : i + 1], copy_index=2)
        np.testing.assert_array_equal(alone[0], whole[i])
    again = augment.augment_batch(images, ALL, seed=7, sample_indices=indices, copy_index=2)
    np.testing.assert_array_equal(again, whole)


def test_transform_order_and_spelling_do_not_matter():
    images = gradient_images()
    indices = np.arange(4)
    a = augment.augment_batch(images, ("color", "crop", "flip"), seed=1, sample_indices=indices, copy_index=1)
    b = augment.augment_batch(images, " Flip, CROP ,color", seed=1, sample_indices=indices, copy_index=1)
    np.testing.assert_array_equal(a, b)


def test_differs_across_copy_index_seed_and_sample_index():
    image = gradient_images(n=1)
    index = np.array([5])
    base = augment.augment_batch(image, ALL, 0, index, 1)
    assert not np.array_equal(base, augment.augment_batch(image, ALL, 0, index, 2))
    assert not np.array_equal(base, augment.augment_batch(image, ALL, 1, index, 1))
    assert not np.array_equal(base, augment.augment_batch(image, ALL, 0, [6], 1))


def test_flip_only_gives_image_or_its_mirror_both_seen():
    images = np.repeat(gradient_images(n=1), 40, axis=0)
    output = augment.augment_batch(images, ("flip",), seed=0, sample_indices=np.arange(40), copy_index=1)
    flipped = [bool(np.array_equal(view, images[0][:, ::-1])) for view in output]
    unchanged = [bool(np.array_equal(view, images[0])) for view in output]
    assert all(f or u for f, u in zip(flipped, unchanged))
    assert 5 <= sum(flipped) <= 35


def test_color_only_keeps_geometry():
    image = gradient_images(n=1)[0]
    image[4:10, 3:12] = (200, 40, 90)
    mask = np.zeros(image.shape[:2], dtype=bool)
    mask[4:10, 3:12] = True
    images = np.repeat(image[None], 20, axis=0)
    output = augment.augment_batch(images, ("color",), seed=2, sample_indices=np.arange(20), copy_index=1)
    changed = 0
    for view in output:
        region = view[mask]
        assert (region == region[0]).all(), "a constant-colour region must stay constant"
        # The rest of the image keeps its ordering along the red (column) gradient.
        assert (np.diff(view[0, :, 0].astype(int)) >= 0).all()
        changed += not np.array_equal(view, image)
    assert changed >= 18


def test_color_jitter_stays_near_input_and_clips():
    white = np.full((1, 8, 8, 3), 255, dtype=np.uint8)
    output = augment.augment_batch(white, ("color",), seed=0, sample_indices=[0], copy_index=1)
    assert output.min() >= int(255 * 0.8 * 0.8) - 1
    image = gradient_images(n=1)
    output = augment.augment_batch(image, ("color",), seed=0, sample_indices=[0], copy_index=1)
    assert np.abs(output.astype(int) - image.astype(int)).max() < 120


@pytest.mark.parametrize("transform", ["crop", "zoom"])
def test_crop_and_zoom_change_most_views(transform):
    images = np.repeat(gradient_images(n=1, height=24, width=24), 20, axis=0)
    output = augment.augment_batch(images, (transform,), seed=0, sample_indices=np.arange(20), copy_index=1)
    assert output.min() >= 0 and output.max() <= 255
    changed = sum(not np.array_equal(view, images[0]) for view in output)
    assert changed >= 16
    # Mild: each view still resembles the input.
    assert np.abs(output.astype(float) - images.astype(float)).mean() < 40


def test_zoom_out_reflects_instead_of_padding_black():
    image = np.full((16, 16, 3), 180, dtype=np.uint8)
    views = [augment._resample(image, augment._zoom_box((0.0, 0.0, 16.0, 16.0), 0.9))]
    views.append(augment.augment_image(image, ("zoom",), np.random.default_rng(0)))
    for view in views:
        np.testing.assert_array_equal(view, image)


def test_crop_box_within_image_and_within_ranges():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = augment._crop_box(30, 40, rng.random(augment._NUM_DRAWS))
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        assert right - left >= 0.8 * 40 * np.sqrt(3 / 4) - 1e-6
        assert bottom - top >= 0.8 * 30 * np.sqrt(3 / 4) - 1e-6


def test_tiny_images():
    for height, width in [(1, 1), (2, 3), (5, 4)]:
        images = np.random.default_rng(0).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        output = augment.augment_batch(images, ALL, seed=0, sample_indices=[0, 1], copy_index=3)
        assert output.shape == images.shape and output.dtype == np.uint8


def test_empty_batch():
    images = np.zeros((0, 8, 8, 3), dtype=np.uint8)
    output = augment.augment_batch(images, ALL, seed=0, sample_indices=[], copy_index=1)
    assert output.shape == (0, 8, 8, 3) and output.dtype == np.uint8


@pytest.mark.parametrize("text", [None, "", "  "])
def test_parse_transforms_empty_means_none(text):
    assert augment.parse_transforms(text) == ()


def test_parse_transforms_canonical_order():
    assert augment.parse_transforms("flip,crop,color") == ("flip", "crop", "color")
    assert augment.parse_transforms("color, Zoom ,flip,crop") == ("flip", "crop", "zoom", "color")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("flp", "'flp' is not one of them"),
        ("flip,,crop", "'' is not one of them"),
        ("flip,crop,flip", "flip is repeated"),
    ],
)
def test_parse_transforms_rejects_bad_lists(text, problem):
    expected = (
        r"Expected --augmentations to be a comma-separated list of flip, crop, zoom, color\. "
        rf"Received: '{text}' \({problem}\)"
    )
    with pytest.raises(ValueError, match=expected):
        augment.parse_transforms(text)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=np.zeros((2, 8, 8), np.uint8)), "Expected images to be an"),
        (dict(images=np.zeros((2, 8, 8, 3), np.float32)), "Expected images to be an"),
        (dict(sample_indices=[0]), "Expected sample_indices to be 2 non-negative"),
        (dict(sample_indices=[0, -1]), "Expected sample_indices"),
        (dict(sample_indices=[0.0, 1.0]), "Expected sample_indices"),
        (dict(copy_index=0), r"Expected copy_index to be an integer >= 1"),
        (dict(copy_index=1.0), r"Expected copy_index"),
        (dict(seed=-1), r"Expected seed to be an integer >= 0"),
        (dict(transforms=("flip", "blur")), "Expected --augmentations"),
    ],
)
def test_augment_batch_rejects_bad_arguments(kwargs, match):
    arguments = dict(
        images=np.zeros((2, 8, 8, 3), np.uint8), transforms=ALL, seed=0, sample_indices=[0, 1], copy_index=1
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        augment.augment_batch(**arguments)


def test_augment_image_rejects_bad_image():
    with pytest.raises(ValueError, match=r"Expected image to be a \(height, width, 3\) uint8 array"):
        augment.augment_image(np.zeros((8, 8, 4), np.uint8), ALL, np.random.default_rng(0))


def test_module_does_not_import_tensorflow():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(augment))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"math", "numpy", "PIL"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(images=np.zeros((2, 8, 8), np.uint8)),
     r"^Expected images to be an \(n, height, width, 3\) uint8 array\. Received: shape \(2, 8, 8\), dtype uint8\. "
     r"Pass a batch of RGB images as decoded, before preprocessing\.$"),
    (dict(sample_indices=[0]),
     r"^Expected sample_indices to be 2 non-negative integers, one per image\. Received: shape \(1,\), dtype "
     r"int64\. Pass each image's index in its split, which seeds its views\.$"),
    (dict(copy_index=0), r"^Expected copy_index to be an integer >= 1\. Received: 0\. Pass e\.g\. copy_index=1\.$"),
])
def test_augment_batch_messages_say_how_to_fix_them(kwargs, message):
    arguments = dict(images=np.zeros((2, 8, 8, 3), np.uint8), transforms=ALL, seed=0, sample_indices=[0, 1],
                     copy_index=1)
    with pytest.raises(ValueError, match=message):
        augment.augment_batch(**{**arguments, **kwargs})


def test_augment_image_message_says_how_to_fix_it():
    with pytest.raises(ValueError, match=r"^Expected image to be a \(height, width, 3\) uint8 array\. Received: "
                       r"shape \(8, 8, 4\), dtype uint8\. Pass one RGB image as decoded, before preprocessing\.$"):
        augment.augment_image(np.zeros((8, 8, 4), np.uint8), ALL, np.random.default_rng(0))
