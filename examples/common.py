"""What the example scripts share: their start, their output folder check and their tables."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def output_dir(value):
    """Returns `--output_dir` as an absolute path, refusing one inside the repository.

    Raises:
        app.UsageError: the folder is the repository or inside it (examples write
            caches and models there).
    """
    from absl import app  # pylint: disable=g-import-not-at-top

    output = os.path.abspath(value)
    if output == ROOT or output.startswith(ROOT + os.sep):
        raise app.UsageError(f"Expected --output_dir outside the repository. Received: {output}.")
    return output


def write_results(output, text):
    """Prints `text` (the example's Markdown tables) and writes it to `<output>/results.md`."""
    text = text.rstrip("\n") + "\n"
    with open(os.path.join(output, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print()
    print(text)


def markdown_table(header, rows):
    """Returns a Markdown table of `rows` (sequences of cells) under `header`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def start(argv):
    """Refuses stray arguments and quiets TensorFlow's start-up chatter (before it loads).

    Raises:
        app.UsageError: positional arguments were given.
    """
    from absl import app  # pylint: disable=g-import-not-at-top

    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Defaults of --data_dir and --weights_dir: folders beside the checkout, where a development machine keeps
# them. Anyone else passes their own folders (what they must hold: DATASETS and WEIGHTS_FILES).
DATA_DIR = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
WEIGHTS_DIR = os.path.normpath(os.path.join(ROOT, "..", "shared", "weights"))

# The subfolders of --data_dir: what each holds and where it comes from.
DATASETS = {
    "cifar10-mini": "CIFAR-10 (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html): JPEG "
                    "subsets train/<class>/*.jpg (100 per class, from the train split) and val/<class>/*.jpg "
                    "(100 per class, from the test split), or the python batches (data_batch_1..5, "
                    "test_batch)",
    "gtsrb-mini": "GTSRB, the German Traffic Sign Recognition Benchmark (Stallkamp et al. 2012, "
                  "https://benchmark.ini.rub.de/gtsrb_dataset.html), in its official layout: "
                  "Final_Training/Images/000NN/*.ppm with GT-000NN.csv and Final_Test/Images/*.ppm with "
                  "Final_Test/GT-final_test.csv",
    "mnist-t10k": "the MNIST test set (LeCun, Cortes and Burges) as published, IDX files "
                  "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
    "cats-vs-dogs-mini": "Kaggle's Dogs vs. Cats photos (https://www.kaggle.com/c/dogs-vs-cats): "
                         "train/{cats,dogs}/*.jpg and val/{cats,dogs}/*.jpg",
}
# A file or folder that shows that --data_dir is itself the dataset (as the examples once took it).
_DATASET_MARKERS = {
    "cifar10-mini": ("train", "data_batch_1", "cifar-10-batches-py"),
    "gtsrb-mini": ("Final_Training", "Final_Test"),
    "mnist-t10k": ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
    "cats-vs-dogs-mini": ("train",),
}

# ImageNet weights files looked for in --weights_dir, by (network, with its classifier top): Keras' file
# names (the `.weights.h5` ones saved by Keras 3 from the published weights; the `.h5` ones as Keras
# downloads them).
WEIGHTS_FILES = {
    ("mobilenet_v2", False): "mobilenet_v2_1.00_224_no_top.weights.h5",
    ("mobilenet", False): "mobilenet_1_0_224_tf_no_top.weights.h5",
    ("vgg16", False): "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ("vgg16", True): "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
}


def dataset_folder(data_dir, name):
    """Returns the folder of dataset `name` (a key of `DATASETS`) under `data_dir`.

    `data_dir` may also be that dataset's folder itself.

    Raises:
        ValueError: neither `data_dir/name` nor `data_dir` holds the dataset.
    """
    folder = os.path.join(os.path.abspath(data_dir), name)
    if os.path.isdir(folder):
        return folder
    if any(os.path.exists(os.path.join(data_dir, marker)) for marker in _DATASET_MARKERS[name]):
        return os.path.abspath(data_dir)
    raise ValueError(
        f"Expected a folder {name}/ in --data_dir holding {DATASETS[name]}. Received: no such folder "
        f"at {folder}. Pass --data_dir=<folder holding {name}/>.")


def weights_file(network, weights_dir, include_top=False):
    """Returns the path of `network`'s Keras ImageNet weights file in `weights_dir`, or None.

    Args:
        network: a registry name (e.g. "mobilenet_v2").
        weights_dir: the folder of Keras weights files (`--weights_dir`).
        include_top: whether the file must hold the classifier top too.
    """
    name = WEIGHTS_FILES.get((network, include_top))
    path = os.path.join(os.path.abspath(weights_dir), name) if name else None
    return path if path and os.path.isfile(path) else None


def resolve_weights(weights, network, weights_dir, include_top=False):
    """The `weights` argument of the library for `--weights` and `--weights_dir`.

    `imagenet` becomes the network's Keras file in `weights_dir` where it is there (the same weights Keras
    would download); `none` stays; anything else is a path to a weights file.
    """
    if weights == "imagenet":
        return weights_file(network, weights_dir, include_top) or "imagenet"
    return weights if weights == "none" else os.path.abspath(weights)


def weights_help(networks, include_top=False):
    """Help text of --weights_dir naming the Keras files of `networks` it is looked in for."""
    names = [f"{WEIGHTS_FILES[n, include_top]} ({n})" for n in networks if (n, include_top) in WEIGHTS_FILES]
    return ("Folder of Keras ImageNet weights files, by their Keras file names: " + ", ".join(names)
            + ". A network whose file is there runs with it; one without gets ImageNet weights from Keras "
            "(downloaded on first use).")
