"""VGG16-style transfer to MNIST digits, with the tutorial's top-5 image dump.

The tutorial puts a frozen ImageNet VGG16 in front of a small head, trains the
head on MNIST digits, then writes some test digits to a folder, each named
after its five most probable classes (`[7 9 1 2 3].png`). This script does the
same with the project's API:

1. `extract_features`: --network over mnist-t10k/ in --data_dir (the official
   MNIST test set, 10,000 grey 28x28 digits, in the IDX files as published:
   t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz). A lone t10k pair is
   one split, so 20% of it (stratified, seeded) is held out for validation and
   --per_class training digits per class are kept from the rest. Every digit
   becomes RGB and is resized (bilinear) to the network's input size (224 by
   default; --input_size can lower it to the network's minimum, 32).
2. `train_on_caches`: a --head head (softmax: the lab's Flatten -> Dense) on the
   cached features.
3. `predict`: the first --num_images validation digits, written as PNG files,
   go through the frozen network and the head; their top-5 classes are printed
   and the digits dumped to <output_dir>/dump as `[c1 c2 c3 c4 c5].png`.

The default is the tutorial's VGG16 with ImageNet weights, which Keras
downloads on first use:

  .venv/bin/python examples/mnist_top5.py

With --weights=imagenet (the default), a network whose Keras weights file is
in --weights_dir runs with it instead (VGG16:
vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5; MobileNet:
mobilenet_1_0_224_tf_no_top.weights.h5). On a machine without internet, use a
network whose weights file you have, e.g. MobileNet (this is how the figures in
the README were made; about 5 minutes on 2 busy CPU cores):

  .venv/bin/python examples/mnist_top5.py --network=mobilenet \\
      --data_dir=DATA --weights_dir=WEIGHTS

--weights=PATH names a weights file directly.

Everything is written under --output_dir (caches, head, the input PNGs, the
dump and results.md); running the same command again reuses the caches.
"""

import os
import sys
import tempfile
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from examples import common  # pylint: disable=wrong-import-position

_DATA_DIR = flags.DEFINE_string(
    "data_dir", common.DATA_DIR,
    f"Folder holding mnist-t10k/: {common.DATASETS['mnist-t10k']} (or that folder itself).")
_NETWORK = flags.DEFINE_string("network", "vgg16", "The frozen network (a registry name).")
_WEIGHTS = flags.DEFINE_string(
    "weights", "imagenet", "'imagenet' (the network's file in --weights_dir, else downloaded by Keras), "
    "'none' (random), or a path to a Keras weights file of --network without its top.")
_WEIGHTS_DIR = flags.DEFINE_string("weights_dir", common.WEIGHTS_DIR,
                                   common.weights_help(["vgg16", "mobilenet_v2", "mobilenet"]))
_INPUT_SIZE = flags.DEFINE_integer(
    "input_size", None, "Side the digits are resized to; default: the network's (224).",
    lower_bound=1)
_PER_CLASS = flags.DEFINE_integer("per_class", 100, "Training digits per class.", lower_bound=1)
_HEAD = flags.DEFINE_enum("head", "softmax", ["softmax", "mlp", "logreg"], "The head to train.")
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", 10, "Validation digits to classify with predict and dump.", lower_bound=1)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", os.path.join(tempfile.gettempdir(), "bottleneck-cache-examples", "mnist_top5"),
    "Where the caches, head, PNG inputs, dump and results.md go (outside the repository).")



def _write_inputs(split, count, folder):
    """Writes the first `count` digits of `split` as grey PNGs; returns `(paths, labels)`."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    os.makedirs(folder, exist_ok=True)
    paths = []
    for index in range(min(count, len(split))):
        path = os.path.join(folder, f"val{index:04d}_label{split.class_names[split.labels[index]]}.png")
        Image.fromarray(split.images[index]).save(path)
        paths.append(path)
    return paths, [split.class_names[label] for label in split.labels[:len(paths)]]


def main(argv):
    common.start(argv)
    from bottleneck_cache.classifiers import predict  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.classifiers import training  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import extraction  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import networks  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.pipeline import datasets  # pylint: disable=g-import-not-at-top

    output = common.output_dir(_OUTPUT_DIR.value)
    try:
        data_dir = common.dataset_folder(_DATA_DIR.value, "mnist-t10k")
        network = networks.get_network(_NETWORK.value).name
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    weights = common.resolve_weights(_WEIGHTS.value, network, _WEIGHTS_DIR.value)
    rows = []

    started = time.perf_counter()
    try:
        train, validation = extraction.extract_features(
            network=_NETWORK.value, dataset_dir=data_dir, dataset="mnist",
            output_dir=os.path.join(output, "caches"), per_class=_PER_CLASS.value, weights=weights,
            input_size=_INPUT_SIZE.value)
    except ValueError as error:
        sys.exit(f"extract_features failed: {error}")
    seconds = time.perf_counter() - started
    train_cache, validation_cache = cache.read_cache(train.path), cache.read_cache(validation.path)
    size = validation_cache.metadata.input_size
    reused = " (reused)" if train.reused and validation.reused else ""
    rows.append(("1. extract_features", f"{_NETWORK.value} ({os.path.basename(weights)}) @{size[0]}, "
                 f"{train.num_samples} train + {validation.num_samples} validation digits{reused}",
                 f"{seconds:.1f}"))

    head_dir = os.path.join(output, "runs", f"{_NETWORK.value}_mnist_{_PER_CLASS.value}_{_HEAD.value}")
    started = time.perf_counter()
    metrics = training.train_on_caches(train_cache, validation_cache,
                                       training.HeadSettings(head=_HEAD.value).check(), head_dir,
                                       verbose=0)
    seconds = time.perf_counter() - started
    rows.append(("2. train head", f"{_HEAD.value}: val_accuracy {metrics['val_accuracy']:.3f}, "
                 f"top-5 {metrics['val_top5_accuracy']:.3f} on {metrics['num_validation']} digits",
                 f"{seconds:.1f}"))

    # The same validation split extraction used (same folder, per_class and seed), as PNG files.
    split = datasets.prepare_splits(data_dir, per_class=_PER_CLASS.value)["validation"]
    paths, truth = _write_inputs(split, _NUM_IMAGES.value, os.path.join(output, "inputs"))
    dump_dir = os.path.join(output, "dump")
    if os.path.isdir(dump_dir):  # A fresh dump each run (predict never overwrites a file).
        for name in os.listdir(dump_dir):
            os.remove(os.path.join(dump_dir, name))
    started = time.perf_counter()
    results = predict.predict(head_dir, paths, weights=weights, top_k=5, dump_dir=dump_dir,
                              dump_count=len(paths))
    seconds = time.perf_counter() - started
    correct = sum(r.top_k[0][0] == label for r, label in zip(results, truth) if not r.skipped)
    # predict decoded the PNGs and ran the network again; the head on the cached rows of the same
    # digits must give the same probabilities (up to the engines' rounding).
    row_of = {name: row for row, name in enumerate(validation_cache.filenames)}
    cached = predict.head_probabilities(
        predict.load_head(head_dir, predict.read_head_config(head_dir)),
        validation_cache.features[[row_of[name] for name in split.ids[:len(paths)]]],
        len(validation_cache.class_names))
    difference = max(abs(r.probabilities - c).max() for r, c in zip(results, cached))
    rows.append(("3. predict + dump", f"{len(paths)} validation digits: top-1 {correct}/{len(paths)}; "
                 f"largest difference from the head on their cached features {difference:.1e}",
                 f"{seconds:.1f}"))

    stages = common.markdown_table(["stage", "what", "seconds"], rows)
    images = common.markdown_table(
        ["input", "true", "top-5 (probability)", "dumped as"],
        [(os.path.basename(r.path), label,
          ", ".join(f"{name} ({p:.2f})" for name, p in r.top_k),
          os.path.basename(r.dump_path) if r.dump_path else "-")
         for r, label in zip(results, truth)])
    dumped = sorted(os.listdir(dump_dir))
    text = (f"{stages}\n\n{images}\n\nFiles in {dump_dir} ({len(dumped)}):\n"
            + "\n".join(f"  {name}" for name in dumped) + "\n")
    common.write_results(output, text)


if __name__ == "__main__":
    app.run(main)
