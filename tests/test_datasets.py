"""Tests for `pipeline.datasets`: every format, image conversion, sampling and every error message."""

import gzip
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bottleneck_cache.pipeline import datasets
from bottleneck_cache.pipeline.datasets import DatasetError, Split
from tests.conftest import write_folder_dataset

REAL_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


# --------------------------------------------------------------------------------------------------
# Writers for tiny synthetic datasets.


def _write_cifar(folder, batches=(("data_batch_1", 6), ("data_batch_2", 4), ("test_batch", 5)), meta=True, seed=0):
    """Writes CIFAR-10 python batches (pickled dicts with bytes keys); returns `{file: (images, labels)}`."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    written = {}
    for name, count in batches:
        images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
        labels = [int(label) for label in rng.integers(0, 10, size=count)]
        data = images.transpose(0, 3, 1, 2).reshape(count, 3072)  # Rows of R, then G, then B planes.
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": []}, f)
        written[name] = (images, np.asarray(labels))
    if meta:
        names = [f"class{i}".encode() for i in range(10)]
        with open(os.path.join(folder, "batches.meta"), "wb") as f:
            pickle.dump({b"label_names": names, b"num_cases_per_batch": 10000}, f)
    return written


def _idx_bytes(array, magic):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write_idx(path, array, magic):
    data = _idx_bytes(array, magic)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def _write_mnist(folder, prefixes=("train", "t10k"), counts=(7, 3), gz=True, seed=0):
    """Writes MNIST IDX pairs; returns `{prefix: (images, labels)}`."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    suffix = ".gz" if gz else ""
    written = {}
    for prefix, count in zip(prefixes, counts):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        _write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{suffix}"), images, 0x803)
        _write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{suffix}"), labels, 0x801)
        written[prefix] = (images, labels)
    return written


_GTSRB_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"


def _gtsrb_image(path, class_id, size):
    pixels = np.full((size, size + 2, 3), 40 * class_id + 20, dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _write_gtsrb(root, class_ids=(0, 1, 2), per_class=3, test_labels=(2, 0, 1, 1), test_csv="Final_Test"):
    """Writes the official GTSRB layout with `.ppm` images and `;`-separated CSVs.

    `test_csv` is the folder of the labelled test CSV ("Final_Test", "Final_Test/Images") or None.
    """
    train = os.path.join(root, "Final_Training", "Images")
    for class_id in class_ids:
        folder = os.path.join(train, f"{class_id:05d}")
        os.makedirs(folder)
        rows = [_GTSRB_HEADER]
        # Listed in reverse file order: the CSV order is what counts.
        for i in reversed(range(per_class)):
            name = f"00000_{i:05d}.ppm"
            _gtsrb_image(os.path.join(folder, name), class_id, 15 + i)
            rows.append(f"{name};{17 + i};{15 + i};1;1;{14 + i};{12 + i};{class_id}\n")
        with open(os.path.join(folder, f"GT-{class_id:05d}.csv"), "w") as f:
            f.writelines(rows)
    images = os.path.join(root, "Final_Test", "Images")
    os.makedirs(images)
    rows, unlabelled = [_GTSRB_HEADER], ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n"]
    for i, class_id in enumerate(test_labels):
        name = f"{i:05d}.ppm"
        _gtsrb_image(os.path.join(images, name), class_id, 20)
        rows.append(f"{name};22;20;1;1;20;18;{class_id}\n")
        unlabelled.append(f"{name};22;20;1;1;20;18\n")
    # The official download ships this unlabelled CSV next to the test images.
    with open(os.path.join(images, "GT-final_test.test.csv"), "w") as f:
        f.writelines(unlabelled)
    if test_csv == "Final_Test":
        with open(os.path.join(root, "Final_Test", "GT-final_test.csv"), "w") as f:
            f.writelines(rows)
    elif test_csv == "Final_Test/Images":
        with open(os.path.join(images, "GT-labels.csv"), "w") as f:
            f.writelines(rows)
    return str(root)


def _write_pickle(path, features, labels):
    with open(path, "wb") as f:
        pickle.dump({"features": features, "labels": labels, "sizes": None, "coords": None}, f)
    return str(path)


def _array_split(labels, images=None, name="train", class_names=None):
    labels = np.asarray(labels, dtype=np.int64)
    if images is None:
        images = np.arange(len(labels), dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2)
    if class_names is None:
        class_names = tuple(str(i) for i in range(int(labels.max()) + 1))
    return Split(name, class_names, labels, tuple(f"a#{i}" for i in range(len(labels))), None, images)


# --------------------------------------------------------------------------------------------------
# Module hygiene.


def test_formats_constant():
    assert datasets.FORMATS == ("folder", "cifar10", "mnist", "gtsrb", "npz", "pickle", "digits")
    assert issubclass(DatasetError, ValueError)


def test_module_does_not_import_tensorflow_keras_or_h5py():
    code = (
        "import sys; import bottleneck_cache.pipeline.datasets as d; d.load_dataset(None); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules))"
    )
    root = os.path.join(os.path.dirname(__file__), "..")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------
# folder


def test_folder_train_and_val(folder_dataset):
    splits = datasets.load_dataset(folder_dataset)
    assert set(splits) == {"train", "validation"}
    train, validation = splits["train"], splits["validation"]
    assert (train.name, validation.name) == ("train", "validation")
    assert train.class_names == validation.class_names == ("cat", "dog", "fish")
    assert train.num_classes == 3
    assert len(train) == 12 and len(validation) == 6
    np.testing.assert_array_equal(train.labels, np.repeat([0, 1, 2], 4))
    assert train.labels.dtype == np.int64
    assert train.ids[:4] == ("train/cat/cat_0.jpg", "train/cat/cat_1.png", "train/cat/cat_2.jpg", "train/cat/cat_3.png")
    assert validation.ids[0] == "val/cat/cat_0.jpg"
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in train.paths)
    assert train.images is None
    batch = train.load([0, 11], (20, 24))
    assert batch.shape == (2, 20, 24, 3) and batch.dtype == np.uint8
    # Class means are 30 (cat) and 150 (fish): the right files were decoded, in the right order.
    assert abs(batch[0].mean() - 30) < 5 and abs(batch[1].mean() - 150) < 5


def test_folder_single_root_sorts_and_ignores_other_files(tmp_path):
    root = write_folder_dataset(tmp_path / "flat", class_names=("zebra", "ant"), per_class=2)
    Image.new("RGB", (5, 5)).save(tmp_path / "flat" / "ant" / "UPPER.JPG")
    Image.new("RGB", (5, 5)).save(tmp_path / "flat" / "ant" / ".hidden.png")
    (tmp_path / "flat" / "ant" / "notes.txt").write_text("not an image")
    os.makedirs(tmp_path / "flat" / "ant" / "nested")
    Image.new("RGB", (5, 5)).save(tmp_path / "flat" / "ant" / "nested" / "deep.bmp")
    os.makedirs(tmp_path / "flat" / ".cache")
    Image.new("RGB", (5, 5)).save(tmp_path / "flat" / ".cache" / "x.png")
    assert datasets.detect_format(root) == "folder"
    splits = datasets.load_dataset(root)
    assert list(splits) == ["train"]
    train = splits["train"]
    assert train.class_names == ("ant", "zebra")
    assert train.ids == (
        "ant/UPPER.JPG", "ant/ant_0.jpg", "ant/ant_1.png", "ant/nested/deep.bmp",
        "zebra/zebra_0.jpg", "zebra/zebra_1.png",
    )
    np.testing.assert_array_equal(train.labels, [0, 0, 0, 0, 1, 1])


@pytest.mark.parametrize(
    "folders, expected",
    [(("validation", "test"), "validation"), (("test",), "test"), (("val", "validation"), "val"), ((), None)],
)
def test_folder_validation_folder_choice(tmp_path, folders, expected):
    write_folder_dataset(tmp_path / "train", per_class=2)
    for i, name in enumerate(folders):
        write_folder_dataset(tmp_path / name, per_class=i + 1)
    splits = datasets.load_dataset(str(tmp_path), "folder")
    assert splits["train"].ids[0] == "train/cat/cat_0.jpg"
    assert len(splits["train"]) == 6
    if expected is None:
        assert list(splits) == ["train"]
    else:
        assert splits["validation"].ids[0].startswith(expected + "/")


def test_folder_errors(tmp_path):
    image = tmp_path / "one.png"
    Image.new("RGB", (4, 4)).save(image)
    with pytest.raises(DatasetError, match="Expected a folder of class sub-folders .* which is a file"):
        datasets.load_dataset(str(image), "folder")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DatasetError, match="one sub-folder of images per class. Received: no sub-folders"):
        datasets.load_dataset(str(tmp_path / "empty"), "folder")
    os.makedirs(tmp_path / "noimages" / "a")
    os.makedirs(tmp_path / "noimages" / "b")
    (tmp_path / "noimages" / "a" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"Expected image files .* Received: none in 2 folders \(a, b\)"):
        datasets.load_dataset(str(tmp_path / "noimages"))
    write_folder_dataset(tmp_path / "holes", class_names=("a", "c"), per_class=1)
    os.makedirs(tmp_path / "holes" / "b")
    with pytest.raises(DatasetError, match="at least one image in every class folder .* Received: no images in 'b'"):
        datasets.load_dataset(str(tmp_path / "holes"))


def test_folder_validation_classes_must_match(tmp_path):
    write_folder_dataset(tmp_path / "train", class_names=("cat", "dog", "fish"), per_class=1)
    write_folder_dataset(tmp_path / "val", class_names=("cat", "dog", "owl"), per_class=1)
    with pytest.raises(
        DatasetError, match=r"same class folders. Received: only in train/: \['fish'\]; only in val/: \['owl'\]"
    ):
        datasets.load_dataset(str(tmp_path))


# --------------------------------------------------------------------------------------------------
# cifar10


def test_cifar10_batches(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    assert datasets.detect_format(str(tmp_path)) == "cifar10"
    # The published batches are plain data: no --allow_pickle needed.
    splits = datasets.load_dataset(str(tmp_path))
    train, validation = splits["train"], splits["validation"]
    assert train.class_names == tuple(f"class{i}" for i in range(10)) == validation.class_names
    assert len(train) == 10 and len(validation) == 5
    assert train.ids[5:7] == ("data_batch_1#5", "data_batch_2#0")
    assert validation.ids[-1] == "test_batch#4"
    assert train.paths is None and train.images.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(train.images[:6], written["data_batch_1"][0])
    expected_labels = np.concatenate([written["data_batch_1"][1], written["data_batch_2"][1]])
    np.testing.assert_array_equal(train.labels, expected_labels)
    np.testing.assert_array_equal(validation.load([4], (32, 32))[0], written["test_batch"][0][4])


def test_cifar10_default_names_and_test_batch_only(tmp_path):
    _write_cifar(tmp_path, batches=(("test_batch", 3),), meta=False)
    splits = datasets.load_dataset(str(tmp_path), "cifar10", allow_pickle=True)
    assert list(splits) == ["train"]
    assert splits["train"].class_names[:2] == ("airplane", "automobile")
    assert splits["train"].ids[0] == "test_batch#0"


def test_cifar10_errors(tmp_path):
    _write_cifar(tmp_path / "ok")
    os.makedirs(tmp_path / "evil")
    with open(tmp_path / "evil" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [os.getcwd]}, f)
    with pytest.raises(DatasetError, match=r"readable pickle of plain data. Received: UnsafePickleError: it "
                       r"refers to posix.getcwd, which is not plain data. .*--allow_pickle .* only for files you trust"):
        datasets.load_dataset(str(tmp_path / "evil"), "cifar10")
    with pytest.raises(DatasetError, match="CIFAR-10 python batches .* Received: none found"):
        datasets.load_dataset(str(tmp_path), "cifar10", allow_pickle=True)
    os.makedirs(tmp_path / "shape")
    with open(tmp_path / "shape" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DatasetError, match=r"shape \(num_samples, 3072\).* Received: dtype uint8, shape \(2, 100\)"):
        datasets.load_dataset(str(tmp_path / "shape"), allow_pickle=True)
    os.makedirs(tmp_path / "keys")
    with open(tmp_path / "keys" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(DatasetError, match=r"a dict with key 'labels'. Received: \[\"b'data'\"\]"):
        datasets.load_dataset(str(tmp_path / "keys"), allow_pickle=True)
    os.makedirs(tmp_path / "count")
    with open(tmp_path / "count" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(DatasetError, match="as many labels as images .* Received: 2 images and 3 labels"):
        datasets.load_dataset(str(tmp_path / "count"), allow_pickle=True)
    os.makedirs(tmp_path / "garbage")
    (tmp_path / "garbage" / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match="test_batch' to be a readable pickle of plain data. Received: UnpicklingError"):
        datasets.load_dataset(str(tmp_path / "garbage"), allow_pickle=True)


# --------------------------------------------------------------------------------------------------
# mnist


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    written = _write_mnist(tmp_path, gz=gz)
    assert datasets.detect_format(str(tmp_path)) == "mnist"
    splits = datasets.load_dataset(str(tmp_path))
    train, validation = splits["train"], splits["validation"]
    assert train.class_names == tuple("0123456789")
    assert (len(train), len(validation)) == (7, 3)
    suffix = ".gz" if gz else ""
    assert validation.ids[2] == f"t10k-images-idx3-ubyte{suffix}#2"
    np.testing.assert_array_equal(train.images, written["train"][0])
    np.testing.assert_array_equal(validation.labels, written["t10k"][1])
    batch = train.load([3], (28, 28))
    np.testing.assert_array_equal(batch[0], np.repeat(written["train"][0][3][:, :, None], 3, axis=-1))


def test_mnist_single_pair_is_train(tmp_path):
    _write_mnist(tmp_path, prefixes=("t10k",), counts=(4,), gz=False)
    splits = datasets.load_dataset(str(tmp_path), "mnist")
    assert list(splits) == ["train"] and len(splits["train"]) == 4


def test_mnist_errors(tmp_path):
    with pytest.raises(DatasetError, match="Expected MNIST IDX files .* Received: none found"):
        datasets.load_dataset(str(tmp_path), "mnist")
    half = tmp_path / "half"
    _write_mnist(half, prefixes=("train",), counts=(2,))
    os.remove(half / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError, match="an images and a labels IDX file for 'train'.* Add train-labels-idx1-ubyte"):
        datasets.load_dataset(str(half), "mnist")
    many = tmp_path / "many"
    _write_mnist(many, prefixes=("train", "extra"), counts=(2, 2))
    with pytest.raises(DatasetError, match=r"Received pairs: \['extra', 'train'\]"):
        datasets.load_dataset(str(many))
    swapped = tmp_path / "swapped"
    os.makedirs(swapped)
    _write_idx(swapped / "train-images-idx3-ubyte", np.zeros(3, np.uint8), 0x801)
    _write_idx(swapped / "train-labels-idx1-ubyte", np.zeros(3, np.uint8), 0x801)
    with pytest.raises(DatasetError, match="IDX magic number 0x00000803. Received: 0x00000801"):
        datasets.load_dataset(str(swapped))
    truncated = tmp_path / "truncated"
    _write_mnist(truncated, prefixes=("train",), counts=(2,), gz=False)
    with open(truncated / "train-images-idx3-ubyte", "ab") as f:
        f.write(b"\0")
    with pytest.raises(DatasetError, match="to hold 1584 bytes for shape .* Received: 1585 bytes"):
        datasets.load_dataset(str(truncated))
    counts = tmp_path / "counts"
    _write_mnist(counts, prefixes=("train",), counts=(2,), gz=False)
    _write_idx(counts / "train-labels-idx1-ubyte", np.zeros(5, np.uint8), 0x801)
    with pytest.raises(DatasetError, match="as many labels as images .* Received: 2 images and 5 labels"):
        datasets.load_dataset(str(counts))
    corrupt = tmp_path / "corrupt"
    _write_mnist(corrupt, prefixes=("train",), counts=(2,))
    (corrupt / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="to be a readable IDX file"):
        datasets.load_dataset(str(corrupt))


# --------------------------------------------------------------------------------------------------
# gtsrb


def test_gtsrb_official_layout(tmp_path):
    root = _write_gtsrb(tmp_path / "GTSRB")
    assert datasets.detect_format(root) == "gtsrb"
    splits = datasets.load_dataset(root)
    train, validation = splits["train"], splits["validation"]
    assert train.class_names == ("00000", "00001", "00002") == validation.class_names
    assert len(train) == 9
    np.testing.assert_array_equal(train.labels, np.repeat([0, 1, 2], 3))
    assert train.ids[0] == "Final_Training/Images/00000/00000_00002.ppm"  # CSV order
    np.testing.assert_array_equal(validation.labels, [2, 0, 1, 1])
    assert validation.ids[0] == "Final_Test/Images/00000.ppm"
    # The whole image (not the ROI) is resized: every pixel keeps the class colour.
    batch = validation.load([0, 1], (8, 8))
    assert batch.shape == (2, 8, 8, 3)
    assert (batch[0] == 100).all() and (batch[1] == 20).all()


def test_gtsrb_labels_come_from_csv_not_folder_order(tmp_path):
    root = _write_gtsrb(tmp_path, class_ids=(0, 4), per_class=1, test_labels=(4,), test_csv="Final_Test/Images")
    splits = datasets.load_dataset(str(tmp_path), "gtsrb")
    assert splits["train"].class_names == ("00000", "00001", "00002", "00003", "00004")
    np.testing.assert_array_equal(splits["train"].labels, [0, 4])
    np.testing.assert_array_equal(splits["validation"].labels, [4])
    assert root == str(tmp_path)


def test_gtsrb_unlabelled_test_gives_train_only(tmp_path):
    _write_gtsrb(tmp_path, test_csv=None)
    splits = datasets.load_dataset(str(tmp_path))
    assert list(splits) == ["train"] and len(splits["train"]) == 9


def test_gtsrb_test_only_is_train(tmp_path):
    _write_gtsrb(tmp_path, class_ids=())
    splits = datasets.load_dataset(str(tmp_path))
    assert list(splits) == ["train"]
    np.testing.assert_array_equal(splits["train"].labels, [2, 0, 1, 1])


def test_gtsrb_errors(tmp_path):
    with pytest.raises(DatasetError, match="Expected the GTSRB layout .* Received: neither found"):
        datasets.load_dataset(str(tmp_path), "gtsrb")

    def fresh(name, **kwargs):
        return _write_gtsrb(tmp_path / name, **kwargs)

    root = fresh("nolabels", class_ids=(), test_csv=None)
    with pytest.raises(DatasetError, match="Expected labelled GTSRB images .* Received: neither"):
        datasets.load_dataset(root)
    root = fresh("nocsv")
    os.remove(os.path.join(root, "Final_Training", "Images", "00001", "GT-00001.csv"))
    with pytest.raises(DatasetError, match="annotation file .*GT-00001.csv.* Received: no such file"):
        datasets.load_dataset(root)
    root = fresh("columns")
    with open(os.path.join(root, "Final_Training", "Images", "00000", "GT-00000.csv"), "w") as f:
        f.write("Filename,ClassId\n00000_00000.ppm,0\n")
    with pytest.raises(DatasetError, match=r"Filename and ClassId columns. Received columns: \['Filename,ClassId'\]"):
        datasets.load_dataset(root)
    root = fresh("missing")
    os.remove(os.path.join(root, "Final_Test", "Images", "00001.ppm"))
    with pytest.raises(DatasetError, match="image '00001.ppm' listed in .* Received: no such file"):
        datasets.load_dataset(root)
    root = fresh("classid")
    with open(os.path.join(root, "Final_Training", "Images", "00002", "GT-00002.csv"), "a") as f:
        f.write("00000_00000.ppm;1;1;0;0;1;1;two\n")
    with pytest.raises(DatasetError, match="ClassId of '00000_00000.ppm' .* an integer >= 0. Received: 'two'"):
        datasets.load_dataset(root)
    root = fresh("binary")
    with open(os.path.join(root, "Final_Test", "GT-final_test.csv"), "wb") as f:
        f.write(b"\xff\xfe\xfa\x00 not text")
    with pytest.raises(DatasetError, match="GT-final_test.csv' to be a readable CSV file"):
        datasets.load_dataset(root)


# --------------------------------------------------------------------------------------------------
# npz


def test_npz_x_y_with_class_names(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(5, 9, 7, 3), dtype=np.uint8)
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=np.array([0, 1, 2, 1, 0]), class_names=np.array(["a", "b", "c"]))
    assert datasets.detect_format(str(path)) == "npz"
    splits = datasets.load_dataset(str(path))
    train = splits["train"]
    assert list(splits) == ["train"]
    assert train.class_names == ("a", "b", "c")
    assert train.ids[4] == "data.npz#4"
    np.testing.assert_array_equal(train.images, x)
    np.testing.assert_array_equal(train.load([1], (9, 7))[0], x[1])


def test_npz_keras_style(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.random((6, 8, 8, 1)).astype(np.float32)  # floats in [0, 1]
    x_test = rng.integers(0, 256, size=(3, 8, 8)).astype(np.int16)  # other dtypes in 0..255 are kept
    y_train = np.array([[0], [1], [0], [1], [0], [3]])  # Keras' (N, 1) labels
    path = tmp_path / "keras.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=np.array([1.0, 0.0, 2.0]))
    splits = datasets.load_dataset(str(path), "npz")
    train, validation = splits["train"], splits["validation"]
    assert train.class_names == ("0", "1", "2", "3") == validation.class_names
    np.testing.assert_array_equal(train.labels, [0, 1, 0, 1, 0, 3])
    np.testing.assert_array_equal(validation.labels, [1, 0, 2])
    np.testing.assert_array_equal(train.images, np.round(x_train * 255).astype(np.uint8))
    np.testing.assert_array_equal(validation.images, x_test.astype(np.uint8))
    assert train.ids[0] == "keras.npz:x_train#0" and validation.ids[0] == "keras.npz:x_test#0"
    assert validation.load([0, 2], (8, 8)).shape == (2, 8, 8, 3)


def test_npz_x_train_without_test(tmp_path):
    path = tmp_path / "train_only.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4, 4), np.uint8), y_train=np.array([0, 1]))
    assert list(datasets.load_dataset(str(path))) == ["train"]


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"images": np.zeros((2, 4, 4))}, r"arrays x and y, or x_train and y_train .* Received: \['images'\]"),
        ({"x": np.zeros((2, 4, 4)), "y": [0, 1], "class_names": np.array(["a", 1], dtype=object)},
         "'class_names' .* to be a plain array"),
        ({"x": np.zeros((2, 4, 4)), "y": [0.5, 1]}, "labels in .* to be integers. Received: dtype float64"),
        ({"x": np.zeros((2, 4, 4)), "y": [True, False]}, "labels in .* to be integers. Received: dtype bool"),
        ({"x": np.zeros((2, 4, 4)), "y": [0, -1]}, "labels in .* to be >= 0. Received: a minimum of -1"),
        ({"x": np.zeros((2, 4, 4)), "y": np.eye(2)},
         r"shape \(num_samples,\) or \(num_samples, 1\). Received: shape \(2, 2\). If they are one-hot"),
        ({"x": np.zeros((2, 4)), "y": [0, 1]}, r"images in .* Received: shape \(2, 4\)"),
        ({"x": np.zeros((2, 4, 4, 2)), "y": [0, 1]}, r"images in .* Received: shape \(2, 4, 4, 2\)"),
        ({"x": np.full((2, 4, 4), "a"), "y": [0, 1]}, "images in .* to be numeric. Received: dtype <U1"),
        ({"x": np.zeros((3, 4, 4)), "y": [0, 1]}, "as many labels as images .* Received: 3 images and 2 labels"),
        ({"x": np.zeros((2, 4, 4)), "y": [0, 2], "class_names": np.array(["a", "b"])},
         r"labels of split 'train' in \[0, 2\) .* Received: labels from 0 to 2"),
    ],
)
def test_npz_errors(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=match):
        datasets.load_dataset(str(path))


def test_npz_file_errors(tmp_path):
    with pytest.raises(DatasetError, match="Expected a .npz file .* which is a folder"):
        datasets.load_dataset(str(tmp_path), "npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"definitely not numpy")
    with pytest.raises(DatasetError, match="written by np.savez\\). Received: a file starting with b'defini'"):
        datasets.load_dataset(str(garbage))
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros((2, 3)))
    with pytest.raises(DatasetError, match=r"Received: a single .npy array of shape \(2, 3\)"):
        datasets.load_dataset(str(single))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 10)
    with pytest.raises(DatasetError, match="to be a readable .npz file. Received: "):
        datasets.load_dataset(str(broken))
    header = tmp_path / "header.npz"
    header.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'garbage': 1}  \n")
    with pytest.raises(DatasetError, match="header.npz' to be a readable .npz file. Received: "):
        datasets.load_dataset(str(header))
    corrupt = tmp_path / "corrupt.npz"
    np.savez(corrupt, x=np.zeros((2, 4, 4), np.uint8), y=np.array([0, 1]))
    data = bytearray(corrupt.read_bytes())
    data[data.find(b"\0" * 32) + 5] = 7  # Inside x's pixels: the member's CRC no longer matches.
    corrupt.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="Expected 'x' in .* to be readable. Received: Bad CRC-32"):
        datasets.load_dataset(str(corrupt))


# --------------------------------------------------------------------------------------------------
# pickle (Udacity lab)


def test_pickle_single_file(tmp_path):
    features = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    path = _write_pickle(tmp_path / "train_100.p", features, np.array([0, 1, 4, 1]))
    assert datasets.detect_format(path) == "pickle"
    splits = datasets.load_dataset(path, allow_pickle=True)
    train = splits["train"]
    assert list(splits) == ["train"]
    assert train.class_names == ("0", "1", "2", "3", "4")
    assert train.ids[3] == "train_100.p#3"
    np.testing.assert_array_equal(train.load([2], (32, 32))[0], features[2])


@pytest.mark.parametrize("validation_file", ["valid.p", "test.p"])
def test_pickle_folder(tmp_path, validation_file):
    _write_pickle(tmp_path / "train.p", np.zeros((3, 8, 8, 3), np.uint8), np.array([0, 1, 1]))
    _write_pickle(tmp_path / validation_file, np.zeros((2, 8, 8, 3), np.uint8), np.array([2, 0]))
    if validation_file == "valid.p":  # valid.p is preferred over test.p.
        _write_pickle(tmp_path / "test.p", np.zeros((1, 8, 8, 3), np.uint8), np.array([0]))
    assert datasets.detect_format(str(tmp_path)) == "pickle"
    splits = datasets.load_dataset(str(tmp_path), allow_pickle=True)
    assert splits["train"].class_names == ("0", "1", "2") == splits["validation"].class_names
    assert len(splits["validation"]) == 2 and splits["validation"].ids[0] == f"{validation_file}#0"


def test_pickle_errors(tmp_path):
    path = _write_pickle(tmp_path / "train.p", np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 1]))
    with pytest.raises(DatasetError, match="Pass --allow_pickle .* only for files you trust"):
        datasets.load_dataset(path)
    with pytest.raises(DatasetError, match="Pass --allow_pickle .* only for files you trust"):
        datasets.load_dataset(str(tmp_path))
    os.makedirs(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"folder holding train.p .* Received: no train.p"):
        datasets.load_dataset(str(tmp_path / "nope"), "pickle", allow_pickle=True)
    with open(tmp_path / "list.p", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(DatasetError, match="to hold a dict with key 'labels'. Received: list"):
        datasets.load_dataset(str(tmp_path / "list.p"), allow_pickle=True)


# --------------------------------------------------------------------------------------------------
# digits


@pytest.mark.parametrize("path, dataset_format", [(None, None), (None, "digits"), ("ignored", "DIGITS")])
def test_digits(path, dataset_format):
    splits = datasets.load_dataset(path, dataset_format)
    train = splits["train"]
    assert list(splits) == ["train"]
    assert len(train) == 1797 and train.images.shape == (1797, 8, 8) and train.images.dtype == np.uint8
    assert train.images.max() == 255 and train.images.min() == 0
    assert train.class_names == tuple("0123456789")
    assert train.ids[12] == "digits#12"
    assert train.load([0], (16, 16)).shape == (1, 16, 16, 3)


# --------------------------------------------------------------------------------------------------
# detect_format and load_dataset errors


def test_detect_format_errors(tmp_path):
    with pytest.raises(DatasetError, match="Expected an existing dataset file or folder. Received: '.*nowhere'"):
        datasets.detect_format(str(tmp_path / "nowhere"))
    text = tmp_path / "data.csv"
    text.write_text("a,b")
    with pytest.raises(DatasetError, match="(?s)Could not detect .*Received: a file with extension '.csv'.*format"):
        datasets.detect_format(str(text))
    with pytest.raises(DatasetError, match="(?s)cifar10: data_batch_1.*Received: a folder containing \\[data.csv\\]"):
        datasets.detect_format(str(tmp_path))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DatasetError, match="(?s)mnist: .*gtsrb: .*Received: an empty folder. Pass --dataset_format"):
        datasets.detect_format(str(tmp_path / "empty"))


def test_load_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="Expected an existing dataset file or folder"):
        datasets.load_dataset(str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="--dataset_format to be one of folder, cifar10, mnist, gtsrb, npz, pickle, "
                                           "digits. Received: 'tfrecord'"):
        datasets.load_dataset(str(tmp_path), "tfrecord")
    with pytest.raises(DatasetError, match="Expected a dataset path for --dataset_format=mnist. Received: no path"):
        datasets.load_dataset(None, "mnist")


# --------------------------------------------------------------------------------------------------
# Image decoding


def _solid(mode, value, size=(6, 10)):
    return Image.new(mode, (size[1], size[0]), value)


def _palette(transparent):
    image = Image.new("P", (10, 6), 1)
    image.putpalette([255, 0, 0, 0, 200, 100] + [0] * 762)
    if transparent:
        image.info["transparency"] = 0
    return image


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("grey.png", lambda: _solid("L", 77), (77, 77, 77)),
        ("bilevel.png", lambda: _solid("1", 1), (255, 255, 255)),
        ("grey_alpha.png", lambda: _solid("LA", (90, 10)), (90, 90, 90)),
        ("rgba.png", lambda: _solid("RGBA", (10, 20, 30, 0)), (10, 20, 30)),
        ("palette.gif", lambda: _palette(False), (0, 200, 100)),
        ("palette_transparent.png", lambda: _palette(True), (0, 200, 100)),
        ("cmyk.jpg", lambda: _solid("CMYK", (0, 255, 255, 0)), (255, 0, 0)),
        ("sixteen.png", lambda: Image.fromarray(np.full((6, 10), 40000, np.uint16)), (156, 156, 156)),
        ("int32.tif", lambda: Image.fromarray(np.full((6, 10), 51400, np.int32)), (200, 200, 200)),
        ("float.tif", lambda: Image.fromarray(np.full((6, 10), 0.5, np.float32)), (128, 128, 128)),
        ("photo.webp", lambda: _solid("RGB", (30, 60, 90)), (30, 60, 90)),
    ],
)
def test_load_converts_every_mode_to_rgb(tmp_path, name, make, expected):
    root = tmp_path / "modes"
    os.makedirs(root / "only")
    make().save(root / "only" / name)
    split = datasets.load_dataset(str(root), "folder")["train"]
    batch = split.load([0], (6, 10))
    assert batch.shape == (1, 6, 10, 3) and batch.dtype == np.uint8
    np.testing.assert_allclose(batch[0].reshape(-1, 3).mean(axis=0), expected, atol=3)


def test_load_array_channels():
    grey = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    for images in (grey, grey[..., None], np.stack([grey] * 3 + [np.zeros_like(grey)], axis=-1)):
        batch = _array_split([0], images).load([0], (4, 4))
        assert batch.shape == (1, 4, 4, 3)
        np.testing.assert_array_equal(batch[0], np.repeat(grey[0][:, :, None], 3, axis=-1))


def test_load_resizes_bilinear_ignoring_aspect_ratio(tmp_path):
    root = write_folder_dataset(tmp_path / "sizes", class_names=("a",), per_class=2, size=(20, 24))
    split = datasets.load_dataset(root)["train"]
    batch = split.load([1, 0, 1], (7, 31))
    assert batch.shape == (3, 7, 31, 3) and batch.dtype == np.uint8
    with Image.open(split.paths[1]) as image:
        expected = np.asarray(image.convert("RGB").resize((31, 7), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(batch[0], expected)
    np.testing.assert_array_equal(batch[0], batch[2])
    # Same size: the PNG pixels come back unchanged.
    with Image.open(split.paths[1]) as image:
        np.testing.assert_array_equal(split.load([1], (20, 24))[0], np.asarray(image))
    arrays = _array_split([0], np.random.default_rng(0).integers(0, 256, (1, 5, 5, 3), dtype=np.uint8))
    assert arrays.load([0], (10, 3)).shape == (1, 10, 3, 3)
    assert split.load([], (4, 4)).shape == (0, 4, 4, 3)


@pytest.mark.parametrize("content", [b"this is not an image", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR truncated"])
def test_load_undecodable_file_names_it(tmp_path, content):
    root = tmp_path / "broken"
    write_folder_dataset(root, class_names=("a",), per_class=1)
    (root / "a" / "zz_bad.png").write_bytes(content)
    split = datasets.load_dataset(str(root))["train"]
    assert split.load([0], (8, 8)).shape == (1, 8, 8, 3)
    with pytest.raises(DatasetError, match="Expected '.*zz_bad.png' to be a readable image. Received: .*Remove"):
        split.load([1], (8, 8))


@pytest.mark.parametrize("image_size", [(0, 4), (4,), "big", (4.5, 4), None])
def test_load_rejects_bad_image_size(image_size):
    with pytest.raises(DatasetError, match="image_size to be \\(height, width\\) with two positive integers"):
        _array_split([0, 1]).load([0], image_size)


# --------------------------------------------------------------------------------------------------
# Split


def test_split_subset_keeps_order_name_and_classes():
    split = _array_split([0, 1, 2, 0, 1], name="validation", class_names=("a", "b", "c"))
    part = split.subset([4, 0, 2])
    assert (part.name, part.class_names) == ("validation", ("a", "b", "c"))
    np.testing.assert_array_equal(part.labels, [1, 0, 2])
    assert part.ids == ("a#4", "a#0", "a#2")
    np.testing.assert_array_equal(part.images[:, 0, 0], [4, 0, 2])
    masked = split.subset(np.array([True, False, False, True, False]))
    assert masked.ids == ("a#0", "a#3") and len(masked) == 2
    assert len(split.subset([])) == 0


def test_split_file_subset_keeps_paths(folder_dataset):
    train = datasets.load_dataset(folder_dataset)["train"]
    part = train.subset([5, 1])
    assert part.paths == (train.paths[5], train.paths[1]) and part.images is None


def test_split_constructor_errors():
    images = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(DatasetError, match=r"labels to be integers of shape \(num_samples,\). Received: dtype float64"):
        Split("train", ("a",), np.array([0.0, 1.0]), ("a", "b"), None, images)
    with pytest.raises(DatasetError, match="exactly one of `paths` .* Received: neither"):
        Split("train", ("a",), np.array([0, 0]), ("a", "b"))
    with pytest.raises(DatasetError, match="exactly one of `paths` .* Received: both"):
        Split("train", ("a",), np.array([0, 0]), ("a", "b"), ("p", "q"), images)
    with pytest.raises(DatasetError, match=r"one label, id and image per sample. Received lengths: \{'labels': 2"):
        Split("train", ("a",), np.array([0, 0]), ("a",), None, images)
    with pytest.raises(DatasetError, match=r"uint8 array of shape .* Received: dtype float32, shape \(2, 4, 4\)"):
        Split("train", ("a",), np.array([0, 0]), ("a", "b"), None, images.astype(np.float32))
    with pytest.raises(DatasetError, match=r"in \[0, 1\) for 1 classes. Received: labels from 0 to 1"):
        Split("train", ("a",), np.array([0, 1]), ("a", "b"), None, images)
    split = _array_split([0, 1])
    with pytest.raises(DatasetError, match=r"boolean mask of shape \(2,\) .* Received: shape \(3,\)"):
        split.subset([True, False, True])
    with pytest.raises(DatasetError, match="1-D sequence of integers. Received: dtype float64"):
        split.subset([0.0, 1.0])
    with pytest.raises(DatasetError, match=r"indices in \[0, 2\) .* Received: values from 0 to 2"):
        split.load([0, 2], (4, 4))
    with pytest.raises(DatasetError, match=r"indices in \[0, 2\) .* Received: values from -1 to -1"):
        split.subset([-1])


# --------------------------------------------------------------------------------------------------
# select_per_class


def _many(per_class=(20, 20, 20), seed=0):
    labels = np.concatenate([np.full(n, label) for label, n in enumerate(per_class)])
    labels = labels[np.random.default_rng(seed).permutation(len(labels))]
    images = np.arange(len(labels), dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)
    return _array_split(labels, images)


def test_select_per_class_is_seeded_and_keeps_order():
    split = _many()
    first = datasets.select_per_class(split, 5, seed=3)
    again = datasets.select_per_class(split, 5, seed=3)
    other = datasets.select_per_class(split, 5, seed=4)
    assert first.ids == again.ids
    assert first.ids != other.ids
    np.testing.assert_array_equal(np.bincount(first.labels), [5, 5, 5])
    positions = [split.ids.index(i) for i in first.ids]
    assert positions == sorted(positions)
    np.testing.assert_array_equal(first.labels, split.labels[positions])
    assert first.name == "train" and first.class_names == split.class_names
    assert len(datasets.select_per_class(split, 20, seed=0)) == 60


def test_select_per_class_errors():
    split = _many(per_class=(6, 2, 6))
    with pytest.raises(DatasetError, match="at least 3 examples of class '1' \\(label 1\\) .* Received: 2. Lower"):
        datasets.select_per_class(split, 3, seed=0)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(DatasetError, match="per_class to be a positive integer. Received: "):
            datasets.select_per_class(split, bad, seed=0)


# --------------------------------------------------------------------------------------------------
# split_validation


def test_split_validation_is_stable_stratified_and_ordered():
    split = _many(per_class=(20, 10, 30))
    train, validation = datasets.split_validation(split, 0.2, seed=1)
    again_train, again_validation = datasets.split_validation(split, 0.2, seed=1)
    assert train.ids == again_train.ids and validation.ids == again_validation.ids
    assert (train.name, validation.name) == ("train", "validation")
    assert train.class_names == validation.class_names == split.class_names
    np.testing.assert_array_equal(np.bincount(validation.labels), [4, 2, 6])
    assert sorted(train.ids + validation.ids) == sorted(split.ids)
    for part in (train, validation):
        positions = [split.ids.index(i) for i in part.ids]
        assert positions == sorted(positions)
    assert datasets.split_validation(split, 0.2, seed=2)[1].ids != validation.ids


def test_split_validation_without_stratification_when_a_class_is_single():
    split = _many(per_class=(10, 1, 9))
    train, validation = datasets.split_validation(split, 0.25, seed=0)
    assert (len(train), len(validation)) == (15, 5)


def test_split_validation_errors():
    split = _many(per_class=(3, 3, 3))
    for bad in (0, 1, 1.5, -0.1, "0.2", True):
        with pytest.raises(DatasetError, match="strictly between 0 and 1. Received: "):
            datasets.split_validation(split, bad, seed=0)
    with pytest.raises(DatasetError, match="large enough .*\\(stratified by class.* Received: 9 samples in 3 classes"):
        datasets.split_validation(split, 0.1, seed=0)
    with pytest.raises(DatasetError, match="unstratified.* Received: 1 samples in 1 classes"):
        datasets.split_validation(_array_split([0]), 0.5, seed=0)


# --------------------------------------------------------------------------------------------------
# prepare_splits


def test_prepare_splits_keeps_existing_validation_whole(folder_dataset):
    splits = datasets.prepare_splits(folder_dataset, per_class=2, seed=5)
    assert set(splits) == {"train", "validation"}
    assert len(splits["train"]) == 6 and len(splits["validation"]) == 6
    np.testing.assert_array_equal(np.bincount(splits["train"].labels), [2, 2, 2])
    assert datasets.prepare_splits(folder_dataset, per_class=2, seed=5)["train"].ids == splits["train"].ids


def test_prepare_splits_carves_validation(tmp_path):
    x = np.zeros((40, 4, 4), np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.repeat([0, 1], 20))
    splits = datasets.prepare_splits(str(path), validation_split=0.25, seed=0)
    assert (len(splits["train"]), len(splits["validation"])) == (30, 10)
    assert splits["validation"].name == "validation"
    picked = datasets.prepare_splits(str(path), per_class=3, validation_split=0.25, seed=0)
    assert len(picked["train"]) == 6 and picked["validation"].ids == splits["validation"].ids
    assert set(picked["train"].ids) <= set(splits["train"].ids)
    digits = datasets.prepare_splits(None, per_class=10, seed=0)
    assert len(digits["train"]) == 100 and len(digits["validation"]) == 360


# --------------------------------------------------------------------------------------------------
# Real data (optional).


@pytest.mark.slow
def test_real_datasets_load_with_expected_counts():
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real data not found at {REAL_DATA}")
    cifar = datasets.load_dataset(os.path.join(REAL_DATA, "cifar10-mini"))
    assert datasets.detect_format(os.path.join(REAL_DATA, "cifar10-mini")) == "folder"
    assert (len(cifar["train"]), len(cifar["validation"])) == (1000, 1000)
    assert cifar["train"].class_names == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )
    np.testing.assert_array_equal(np.bincount(cifar["validation"].labels), [100] * 10)
    assert cifar["train"].load(np.arange(0, 1000, 97), (32, 32)).shape == (11, 32, 32, 3)

    gtsrb = datasets.load_dataset(os.path.join(REAL_DATA, "gtsrb-mini"))
    assert datasets.detect_format(os.path.join(REAL_DATA, "gtsrb-mini")) == "gtsrb"
    assert (len(gtsrb["train"]), len(gtsrb["validation"])) == (4300, 2000)
    assert gtsrb["train"].class_names == tuple(f"{i:05d}" for i in range(43))
    np.testing.assert_array_equal(np.bincount(gtsrb["train"].labels), [100] * 43)
    assert set(np.unique(gtsrb["validation"].labels)) <= set(range(43))
    assert gtsrb["validation"].load([0, 1999], (48, 48)).shape == (2, 48, 48, 3)

    mnist = datasets.load_dataset(os.path.join(REAL_DATA, "mnist-t10k"))
    assert datasets.detect_format(os.path.join(REAL_DATA, "mnist-t10k")) == "mnist"
    assert list(mnist) == ["train"] and len(mnist["train"]) == 10000
    assert mnist["train"].class_names == tuple("0123456789")
    assert mnist["train"].labels[:3].tolist() == [7, 2, 1]  # The published first t10k labels.
    assert len(np.unique(mnist["train"].labels)) == 10


# --------------------------------------------------------------------------------------------------
# Inputs that would train a wrong head, or fail late (issue 10).


def test_folder_training_and_validation_are_split_names(tmp_path):
    write_folder_dataset(tmp_path / "Training", class_names=("a", "b"), per_class=2)
    write_folder_dataset(tmp_path / "validation", class_names=("a", "b"), per_class=1)
    splits = datasets.load_dataset(str(tmp_path))
    assert splits["train"].class_names == splits["validation"].class_names == ("a", "b")
    assert splits["train"].ids[0] == "Training/a/a_0.jpg" and splits["validation"].ids[0] == "validation/a/a_0.jpg"


@pytest.mark.parametrize("folders, match", [
    (("val", "extra"), r"Expected a train/ \(or training/\) folder beside val/ in '.*'\. Received: the folders "
                       r"extra/, val/\. Rename the training split's folder to train/"),
    (("test",), r"Expected a train/ \(or training/\) folder beside test/"),
    (("train", "val", "extra", "more"), r"Expected only split folders beside train/, val/ .* Received also: "
                                        r"extra/, more/, which would be read as neither\. Move them"),
    (("train", "training"), r"Expected one training folder in .* Received: train/, training/\. Merge them"),
    (("train", "training", "val"), r"Expected one training folder"),
])
def test_folder_refuses_split_layouts_it_would_misread(tmp_path, folders, match):
    for name in folders:
        write_folder_dataset(tmp_path / name, class_names=("a", "b"), per_class=1)
    with pytest.raises(DatasetError, match=match):
        datasets.load_dataset(str(tmp_path))


def test_folder_train_mismatch_names_training_folder(tmp_path):
    write_folder_dataset(tmp_path / "training", class_names=("a", "b"), per_class=1)
    write_folder_dataset(tmp_path / "val", class_names=("a", "c"), per_class=1)
    with pytest.raises(DatasetError, match=r"Expected training/ and val/ to hold the same class folders"):
        datasets.load_dataset(str(tmp_path))


@pytest.mark.parametrize("x, match", [
    (np.full((2, 4, 4), -0.5, np.float32), r"Received: float32 values from -0\.5 to -0\.5\. Nothing is clipped"),
    (np.full((2, 4, 4), 255.5), r"Received: float64 values from 255\.5 to 255\.5\. Nothing is clipped"),
    (np.array([[[np.inf]], [[1.0]]]), r"Received: float64 values from 1\.0 to 1\.0, 1 of them NaN or infinite"),
    (np.full((2, 4, 4), np.nan), r"Received: float64 values, 32 of them NaN or infinite\. Nothing is clipped"),
    (np.arange(32, dtype=np.int16).reshape(2, 4, 4) * 10, r"Received: int16 values from 0 to 310\."),
    (np.full((2, 4, 4), -1, np.int64), r"Received: int64 values from -1 to -1\."),
])
def test_npz_refuses_values_outside_0_255(tmp_path, x, match):
    path = tmp_path / "out_of_range.npz"
    np.savez(path, x=x, y=[0, 1])
    with pytest.raises(DatasetError, match=r"Expected the images in '.*out_of_range\.npz' to be uint8, or numbers "
                                           r"in 0\.\.1 or 0\.\.255\. " + match):
        datasets.load_dataset(str(path))


def test_npz_float_0_255_kept_and_0_1_scaled(tmp_path):
    x = np.array([[[0.0, 254.6]], [[255.0, 1.5]]])
    np.savez(tmp_path / "wide.npz", x=x, y=[0, 1])
    np.testing.assert_array_equal(datasets.load_dataset(str(tmp_path / "wide.npz"))["train"].images[:, 0],
                                  [[0, 255], [255, 2]])
    np.savez(tmp_path / "unit.npz", x=x / 255.0, y=[0, 1])
    np.testing.assert_array_equal(datasets.load_dataset(str(tmp_path / "unit.npz"))["train"].images[:, 0],
                                  [[0, 255], [255, 2]])


def test_prepare_splits_refuses_fewer_than_two_classes(tmp_path):
    np.savez(tmp_path / "same.npz", x=np.zeros((6, 4, 4), np.uint8), y=np.zeros(6, int), class_names=["a", "b"])
    with pytest.raises(DatasetError, match=r"Expected at least two classes to train a classifier on\. Received: "
                                           r"1 class \('a'\) in '.*same\.npz' \(6 samples\)\. Add a sub-folder"):
        datasets.prepare_splits(str(tmp_path / "same.npz"))
    write_folder_dataset(tmp_path / "one", class_names=("cat",), per_class=3)
    with pytest.raises(DatasetError, match=r"Received: 1 class \('cat'\)"):
        datasets.prepare_splits(str(tmp_path / "one"))


def test_one_split_classes_says_what_happens():
    train = _array_split(np.array([0, 0, 1, 1, 2]), class_names=("a", "b", "c", "d"))
    validation = _array_split(np.array([0, 1, 3, 3]), name="validation", class_names=("a", "b", "c", "d"))
    assert datasets.one_split_classes(train, validation) == [
        "1 class only in the train split, none in the validation split: 'c' (1 image). It is kept: it is "
        "trained on, but the validation accuracy does not measure it. Add images to it (at least 2 per class "
        "when the validation split is carved out with --validation_split) to have every class in both splits.",
        "1 class only in the validation split, none in the train split: 'd' (2 images). It is kept: the head "
        "never sees it in training, so it never predicts it. Add images to it (at least 2 per class when the "
        "validation split is carved out with --validation_split) to have every class in both splits.",
    ]
    assert datasets.one_split_classes(train, train) == []


def test_prepare_splits_warns_of_a_class_too_small_for_both_splits(tmp_path, caplog):
    write_folder_dataset(tmp_path / "pets", class_names=("cat", "dog"), per_class=5)
    write_folder_dataset(tmp_path / "pets", class_names=("owl",), per_class=1)
    splits = datasets.prepare_splits(str(tmp_path / "pets"))
    assert splits["train"].class_names == ("cat", "dog", "owl")
    assert any("'owl' (1 image)" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


@pytest.mark.parametrize("bad, received", [
    ([b"train/cat/caf\xe9.jpg"], r"1 name in '.*' that is not: 'train/cat/caf\\xe9\.jpg'\. Rename it"),
    ([b"train/caf\xe9/x.jpg", b"val/caf\xe9/x.jpg"], r"2 names in '.*' that are not: 'caf\\xe9', "
                                                   r"'train/caf\\xe9/x\.jpg'\. Rename them"),
])
def test_non_utf8_names_are_refused_before_any_decoding(tmp_path, bad, received):
    write_folder_dataset(tmp_path / "train", class_names=("cat", "dog"), per_class=2)
    write_folder_dataset(tmp_path / "val", class_names=("cat", "dog"), per_class=1)
    for name in bad:
        path = os.path.join(os.fsencode(tmp_path), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.new("RGB", (4, 4)).save(path, format="JPEG")
    with pytest.raises(DatasetError, match=r"Expected file and folder names in UTF-8 \(the cache stores them as "
                                           r"text\)\. Received: " + received + r" to UTF-8 \(e\.g\. convmv"):
        datasets.load_dataset(str(tmp_path))


@pytest.mark.parametrize("target, received", [
    ("missing.jpg", r"a symbolic link to 'missing\.jpg', which does not exist"),
    ("link.jpg", r"a symbolic link loop \('link\.jpg' leads back to itself, never to a file\)"),
])
def test_load_names_a_dangling_link_or_a_loop(tmp_path, target, received):
    write_folder_dataset(tmp_path, class_names=("cat", "dog"), per_class=1)
    os.symlink(target, tmp_path / "cat" / "link.jpg")
    train = datasets.load_dataset(str(tmp_path))["train"]
    assert train.ids == ("cat/cat_0.jpg", "cat/link.jpg", "dog/dog_0.jpg")
    with pytest.raises(DatasetError, match=rf"Expected '.*cat/link\.jpg' to be a readable image\. Received: "
                                           rf"{received}\. Remove the link or point it at an image\."):
        train.load([1], (4, 4))


# --------------------------------------------------------------------------------------------------
# The format registry


def _npz_file(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 4, 4), dtype=np.uint8), y=np.array([0, 1]))
    return str(path)


def _pickle_folder(tmp_path):
    os.makedirs(tmp_path / "lab")
    _write_pickle(tmp_path / "lab" / "train.p", np.zeros((2, 4, 4, 3), dtype=np.uint8), [0, 1])
    return str(tmp_path / "lab")


# name -> (writer of a tiny dataset under tmp_path, the other formats whose detect also matches it)
_LAYOUT_WRITERS = {
    "folder": (lambda tmp: write_folder_dataset(tmp / "pets", per_class=1), ()),
    "cifar10": (lambda tmp: _write_cifar(tmp / "c" / "cifar-10-batches-py", batches=(("test_batch", 2),))
                and str(tmp / "c"), ("folder",)),
    "mnist": (lambda tmp: _write_mnist(tmp / "m", prefixes=("train",), counts=(2,)) and str(tmp / "m"), ()),
    "gtsrb": (lambda tmp: _write_gtsrb(tmp / "g", class_ids=(0,), per_class=1, test_labels=(0,)), ("folder",)),
    "npz": (_npz_file, ()),
    "pickle": (lambda tmp: _write_pickle(tmp / "t.p", np.zeros((2, 4, 4, 3), dtype=np.uint8), [0, 1]), ()),
    "pickle folder": (_pickle_folder, ()),
}


def test_registry_lists_every_format_once_with_its_layout():
    assert tuple(entry.name for entry in datasets.REGISTRY) == datasets.FORMATS
    assert [entry.name for entry in datasets.REGISTRY if entry.pickled] == ["cifar10", "pickle"]
    assert [entry.name for entry in datasets.REGISTRY if not entry.layout] == ["digits"]
    assert set(_LAYOUT_WRITERS) - {"pickle folder"} == set(datasets.FORMATS) - {"digits"}


@pytest.mark.parametrize("case", sorted(_LAYOUT_WRITERS))
def test_registry_detects_each_format(tmp_path, case):
    write, also = _LAYOUT_WRITERS[case]
    path = write(tmp_path)
    name = case.split()[0]
    matching = {entry.name for entry in datasets.REGISTRY if entry.detect(path)}
    assert matching == {name, *also}  # a format that others also match is detected last
    assert datasets.detect_format(path) == name
    splits = datasets.load_dataset(path, allow_pickle=True)
    assert set(splits) <= {"train", "validation"} and len(splits["train"]) >= 1


def test_registry_detects_the_digits_only_without_a_path(tmp_path):
    (digits,) = [entry for entry in datasets.REGISTRY if entry.name == "digits"]
    assert digits.detect(None) and not digits.detect(str(tmp_path))


# --------------------------------------------------------------------------------------------------
# decode_images: the one decode-and-skip loop


def _split_with_a_bad_image(tmp_path):
    write_folder_dataset(tmp_path / "d", class_names=("a", "b"), per_class=2)
    (tmp_path / "d" / "a" / "a_9.jpg").write_bytes(b"not an image")
    return datasets.load_dataset(str(tmp_path / "d"))["train"]


def test_decode_images_skips_and_logs_what_cannot_be_decoded(tmp_path, caplog):
    split = _split_with_a_bad_image(tmp_path)
    assert split.ids[2] == "a/a_9.jpg"
    decoded = datasets.decode_images(split.image, [3, 2, 0], split.ids, (6, 5))
    assert decoded.images.shape == (2, 6, 5, 3) and decoded.images.dtype == np.uint8
    np.testing.assert_array_equal(decoded.images, split.load([3, 0], (6, 5)))
    assert decoded.kept.tolist() == [3, 0] and decoded.skipped_indices.tolist() == [2]
    ((name, reason),) = decoded.skipped
    assert name == "a/a_9.jpg" and re.match(r"Expected '.*a_9\.jpg' to be a readable image\. Received: ", reason)
    assert f"Skipped a/a_9.jpg: {reason}" in caplog.text
    caplog.clear()
    quiet = datasets.decode_images(split.image, [2], split.ids, (6, 5), log=False)
    assert quiet.images.shape == (0, 6, 5, 3) and quiet.kept.tolist() == [] and "Skipped" not in caplog.text


def test_decode_images_keeps_a_clean_batch_whole(tmp_path):
    split = _split_with_a_bad_image(tmp_path)
    decoded = datasets.decode_images(split.image, np.array([0, 1, 3]), split.ids, (4, 4), on_bad_image="fail")
    np.testing.assert_array_equal(decoded.images, split.load([0, 1, 3], (4, 4)))
    assert decoded.kept.tolist() == [0, 1, 3] and decoded.skipped == () and decoded.skipped_indices.size == 0


def test_decode_images_errors(tmp_path):
    split = _split_with_a_bad_image(tmp_path)
    with pytest.raises(DatasetError, match=r"Expected '.*a_9\.jpg' to be a readable image\. Received: "):
        datasets.decode_images(split.image, [0, 2], split.ids, (4, 4), on_bad_image="fail")
    with pytest.raises(DatasetError, match=r"Expected on_bad_image to be one of \('skip', 'fail'\)\. "
                                           r"Received: on_bad_image='ignore'\."):
        datasets.decode_images(split.image, [0], split.ids, (4, 4), on_bad_image="ignore")
    with pytest.raises(DatasetError, match=r"Expected image_size to be \(height, width\) with two positive"):
        datasets.decode_images(split.image, [0], split.ids, (0, 4))


# --------------------------------------------------------------------------------------------------
# Messages no other test reached (issue 14).


def test_pickled_dataset_needs_allow_pickle(tmp_path):
    path = _write_pickle(tmp_path / "train.p", np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"^Expected allow_pickle=True to load the pickled dataset at "
                       r"'.*train\.p'\. Received: allow_pickle=False\. Loading a pickle runs code"):
        datasets.load_dataset(path, "pickle")


def test_pickled_images_of_the_wrong_shape_are_refused(tmp_path):
    path = _write_pickle(tmp_path / "train.p", np.zeros((2, 5), np.uint8), np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"Expected the images in '.*train\.p' to have shape \(num_samples, "
                       r"height, width\) or \(num_samples, height, width, 1\|3\|4\)\. Received: shape \(2, 5\)"):
        datasets.load_dataset(path, "pickle", allow_pickle=True)


def test_mnist_folder_without_a_test_pair_is_refused(tmp_path):
    _write_mnist(tmp_path, prefixes=("train", "extra"), counts=(2, 2))
    with pytest.raises(DatasetError, match=r"Expected one IDX pair, or a train-\* pair and a t10k-\* \(or test-\*\) "
                       r"pair, in '.*'\. Received pairs: \['extra', 'train'\]\. Keep only the train and test files"):
        datasets.load_dataset(str(tmp_path), "mnist")


def test_gtsrb_class_folder_without_its_annotation_file(tmp_path):
    root = _write_gtsrb(tmp_path / "nocsv")
    os.remove(os.path.join(root, "Final_Training", "Images", "00001", "GT-00001.csv"))
    with pytest.raises(DatasetError, match=r"^Expected the annotation file '.*GT-00001\.csv' for GTSRB class folder "
                       r"'00001'\. Received: no such file\. Restore it, or use --dataset_format=folder to label by "
                       r"folder\.$"):
        datasets.load_dataset(root)


def test_split_too_small_to_hold_out_a_validation_fraction():
    split = _array_split([0])
    with pytest.raises(DatasetError, match=r"^Expected split 'train' to be large enough to hold out a validation "
                       r"fraction of 0\.5 \(unstratified\)\. Received: 1 samples in 1 classes; scikit-learn says: "
                       r".*\. Change --validation_split or add examples\.$"):
        datasets.split_validation(split, 0.5, seed=0)
