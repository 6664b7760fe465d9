"""VGG16 `fc1` codes (the "relu6" codes) of a folder of images, then a head on them.

A classic recipe: run each image through an ImageNet VGG16, keep the 4096
activations of its first fully connected layer after the ReLU (`fc1` in Keras,
`fc6`/`relu6` in the Caffe model and the tutorials that use it), and train a
linear classifier on those codes. `fc1` is part of VGG16's classifier top, so
the network is built with its top and takes the ImageNet input size, 224.

With the project's API:

1. `extract_features(network="vgg16", layer="fc1")` over a folder dataset
   (`<root>/train/<class>/*.jpg` and `<root>/val/<class>/*.jpg`, or
   `<root>/<class>/*.jpg` with 20% held out), --per_class training images per
   class; one 4096-d code per image, cached with its label and file name;
2. `train_on_caches`: a --head head (logreg: standardization and multinomial
   logistic regression) on the codes;
3. a table of validation accuracy and the time of each stage.

The default is VGG16 with ImageNet weights, with the top: Keras' file
vgg16_weights_tf_dim_ordering_tf_kernels.h5 (528 MB) from --weights_dir if it is
there, else Keras downloads it on first use. The default --data_dir is a
cats-vs-dogs-mini folder beside the checkout (Kaggle's Dogs vs. Cats photos,
train/{cats,dogs}/*.jpg and val/{cats,dogs}/*.jpg); any folder dataset will do:

  .venv/bin/python examples/vgg_fc1_codes.py --data_dir=DATA/cats-vs-dogs-mini

A machine without internet and without that file can still check that the
pipeline works end to end, with random weights (the accuracy then means
nothing; the script says so; about 6 minutes on 2 busy CPU cores):

  .venv/bin/python examples/vgg_fc1_codes.py --weights=none --per_class=50 \\
      --data_dir=DATA/cats-vs-dogs-mini

Everything is written under --output_dir (caches, head, results.md); running the
same command again reuses the caches.
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
    "data_dir", os.path.join(common.DATA_DIR, "cats-vs-dogs-mini"),
    "A folder dataset: <root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg, or "
    "<root>/<class>/*.jpg; e.g. cats-vs-dogs-mini/: " + common.DATASETS["cats-vs-dogs-mini"] + ".")
_DATASET = flags.DEFINE_string("dataset", None, "Dataset name in the cache file names; default: "
                               "the folder's name.")
_WEIGHTS = flags.DEFINE_string(
    "weights", "imagenet", "'imagenet' (Keras' file in --weights_dir, else downloaded by Keras), 'none' "
    "(random: checks the pipeline only), or a path to a Keras VGG16 weights file WITH its top.")
_WEIGHTS_DIR = flags.DEFINE_string("weights_dir", common.WEIGHTS_DIR,
                                   "Folder of Keras ImageNet weights files: with --weights=imagenet, VGG16 "
                                   "runs with Keras' file " + common.WEIGHTS_FILES["vgg16", True] + " (for "
                                   "a --layer before the top: " + common.WEIGHTS_FILES["vgg16", False]
                                   + ") from this folder where it is there, else Keras downloads it.")
_LAYER = flags.DEFINE_string("layer", "fc1", "VGG16 layer whose output is the code (fc1 or fc2: "
                             "4096-d; a convolutional layer is average-pooled).")
_PER_CLASS = flags.DEFINE_integer("per_class", 100, "Training images per class.", lower_bound=1)
_HEAD = flags.DEFINE_enum("head", "logreg", ["logreg", "softmax", "mlp"], "The head to train.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", os.path.join(tempfile.gettempdir(), "bottleneck-cache-examples", "vgg_fc1_codes"),
    "Where the caches, head and results.md go (outside the repository).")

RANDOM_WEIGHTS_NOTE = (
    "NOTE: --weights=none: VGG16 ran with RANDOM weights, so these codes are not the relu6 codes of "
    "the tutorials and the accuracy says nothing about them; this run only shows that the pipeline "
    "works end to end, and how long it takes.")



def _weights_label(weights):
    return {"none": "RANDOM weights", "imagenet": "ImageNet weights"}.get(
        weights, f"weights {os.path.basename(weights)}")


def main(argv):
    common.start(argv)
    from bottleneck_cache.classifiers import training  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import extraction  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top

    output = common.output_dir(_OUTPUT_DIR.value)
    data_dir = os.path.abspath(_DATA_DIR.value)
    if not os.path.isdir(data_dir):
        raise app.UsageError(
            f"Expected a folder dataset at {data_dir}. Received: no such folder. Pass "
            "--data_dir=<root of <class>/ folders, or of train/ and val/>, e.g. a cats-vs-dogs-mini "
            f"folder: {common.DATASETS['cats-vs-dogs-mini']}.")
    # Only the classifier top's layers need the weights file with the top (Keras' VGG16 layer names).
    weights = common.resolve_weights(_WEIGHTS.value, "vgg16", _WEIGHTS_DIR.value,
                                     include_top=_LAYER.value in ("flatten", "fc1", "fc2", "predictions"))
    rows = []

    started = time.perf_counter()
    try:
        train, validation = extraction.extract_features(
            network="vgg16", layer=_LAYER.value, dataset_dir=data_dir, dataset=_DATASET.value,
            output_dir=os.path.join(output, "caches"), per_class=_PER_CLASS.value, weights=weights)
    except ValueError as error:
        sys.exit(f"extract_features failed: {error}")
    seconds = time.perf_counter() - started
    train_cache, validation_cache = cache.read_cache(train.path), cache.read_cache(validation.path)
    reused = " (reused)" if train.reused and validation.reused else ""
    rows.append(("1. extract_features", f"VGG16 {_LAYER.value} ({_weights_label(weights)}), "
                 f"codes {train_cache.feature_shape}, {train.num_samples} train + "
                 f"{validation.num_samples} validation images{reused}", "", f"{seconds:.1f}"))

    head_dir = os.path.join(output, "runs", os.path.basename(
        training.default_output_dir(train.path, _HEAD.value)))
    started = time.perf_counter()
    metrics = training.train_on_caches(train_cache, validation_cache,
                                       training.HeadSettings(head=_HEAD.value).check(), head_dir,
                                       verbose=0)
    seconds = time.perf_counter() - started
    classes = len(train_cache.class_names)
    rows.append((f"2. {_HEAD.value} head", f"{classes} classes (chance {1 / classes:.3f}), train "
                 f"accuracy {metrics['train_accuracy']:.3f}", f"{metrics['val_accuracy']:.3f}",
                 f"{seconds:.1f}"))

    text = common.markdown_table(["stage", "what", "val_accuracy", "seconds"], rows) + "\n"
    if weights == "none":
        text += "\n" + RANDOM_WEIGHTS_NOTE + "\n"
    common.write_results(output, text)
    print(f"Caches, head and results.md: {output}")


if __name__ == "__main__":
    app.run(main)
