"""What cached augmentation buys: heads trained with and without augmented views.

`extract_features(..., augment_copies=K, augmentations="flip,crop,color")`
stores, next to each training image's features, the features of K augmented
views of it (seeded, so a rerun gets the same views); the validation split is
never augmented (the library refuses an augmented validation cache). A head
trained on such a cache sees (K + 1) times as many training rows, at the cost
of one more network pass per view -- once, at extraction.

For each dataset this script, with the project's API:

1. extracts MobileNetV2 features (--per_class training images per class)
   without augmentation, into <output_dir>/<dataset>/;
2. extracts them again with --copies augmented views per training image,
   into the same folder (the training cache's name gets `_aug<K>`; the
   validation cache is the same one, and is reused);
3. trains the same heads (--heads) on both, and prints
   dataset | copies | train rows | extraction s | head | val accuracy | delta,
   where delta is the gain in accuracy points over the same head without
   augmentation.

Data: --data_dir holds one folder per dataset: cifar10-mini/ (CIFAR-10 JPEGs,
train/<class>/ and val/<class>/, 100 per class each), cats-vs-dogs-mini/
(Kaggle's Dogs vs. Cats photos, train/{cats,dogs}/ and val/{cats,dogs}/) and,
for --datasets=gtsrb, gtsrb-mini/ (GTSRB in its official Final_Training/ and
Final_Test/ layout). Weights: with --weights=imagenet (the default) the Keras
file mobilenet_v2_1.00_224_no_top.weights.h5 in --weights_dir, else Keras
downloads them; --weights=PATH names a file directly.

Example (from the repository root; about 6 minutes on 2 busy CPU cores):

  .venv/bin/python examples/cached_augmentation.py --data_dir=DATA --weights_dir=WEIGHTS

Everything is written under --output_dir (caches, heads, results.md); running
the same command again reuses the caches.
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

# Dataset name in the cache files -> folder under --data_dir.
DATASETS = {"cifar10": "cifar10-mini", "cats-vs-dogs": "cats-vs-dogs-mini", "gtsrb": "gtsrb-mini"}

_DATA_DIR = flags.DEFINE_string(
    "data_dir", common.DATA_DIR,
    "Folder holding the datasets: " + "; ".join(f"{folder}/: {common.DATASETS[folder]}"
                                                 for folder in DATASETS.values()) + ".")
_DATASETS = flags.DEFINE_list("datasets", ["cifar10", "cats-vs-dogs"],
                              f"Datasets, a comma list of {', '.join(DATASETS)}.")
flags.register_validator("datasets", lambda names: bool(names) and set(names) <= set(DATASETS),
                         f"Expected --datasets to be a comma list of {', '.join(DATASETS)}.")
_WEIGHTS = flags.DEFINE_string(
    "weights", "imagenet", "MobileNetV2 weights: 'imagenet' (the Keras file in --weights_dir, else "
    "downloaded by Keras) or a path to a Keras weights file without the top.")
_WEIGHTS_DIR = flags.DEFINE_string("weights_dir", common.WEIGHTS_DIR,
                                   common.weights_help(["mobilenet_v2"]))
_PER_CLASS = flags.DEFINE_integer("per_class", 100, "Training images per class.", lower_bound=1)
_COPIES = flags.DEFINE_integer("copies", 4, "Augmented views per training image.", lower_bound=1)
_AUGMENTATIONS = flags.DEFINE_string(
    "augmentations", "flip,crop,color", "Transforms of each view, a comma list of flip, crop, zoom, "
    "color (see pipeline/augment.py).")
_HEADS = flags.DEFINE_list("heads", ["softmax", "logreg"], "Heads trained on both caches.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", os.path.join(tempfile.gettempdir(), "bottleneck-cache-examples",
                               "cached_augmentation"),
    "Where the caches, heads and results.md go (outside the repository).")



def _check_paths(data_dir, weights):
    """Refuses a missing dataset or weights file before any work."""
    for name in _DATASETS.value:
        if not os.path.isdir(os.path.join(data_dir, DATASETS[name])):
            raise app.UsageError(
                f"Expected a folder {DATASETS[name]}/ in --data_dir holding "
                f"{common.DATASETS[DATASETS[name]]}. Received: no such folder at "
                f"{os.path.join(data_dir, DATASETS[name])}. Pass --data_dir=<folder holding "
                f"{DATASETS[name]}/>, or --datasets to leave {name} out.")
    if weights != "imagenet" and not os.path.isfile(weights):
        raise app.UsageError(
            f"Expected the MobileNetV2 weights file at {weights}. Received: no such file. Pass "
            "--weights=<a MobileNetV2 weights file without the top>, or --weights=imagenet with "
            f"--weights_dir=<folder holding {common.WEIGHTS_FILES['mobilenet_v2', False]}> (or on a "
            "machine with internet).")


def main(argv):
    common.start(argv)
    from bottleneck_cache.classifiers import training  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import extraction  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top

    output = common.output_dir(_OUTPUT_DIR.value)
    data_dir = os.path.abspath(_DATA_DIR.value)
    weights = common.resolve_weights(_WEIGHTS.value, "mobilenet_v2", _WEIGHTS_DIR.value)
    _check_paths(data_dir, weights)
    try:
        settings = [training.HeadSettings(head=head).check() for head in _HEADS.value]
    except ValueError as error:
        raise app.UsageError(str(error)) from None

    rows, baseline = [], {}
    for name in _DATASETS.value:
        for copies in (0, _COPIES.value):
            folder = os.path.join(output, name)
            print(f"== extract_features: mobilenet_v2 on {name}, augment_copies={copies}", flush=True)
            started = time.perf_counter()
            try:
                train, validation = extraction.extract_features(
                    network="mobilenet_v2", dataset_dir=os.path.join(data_dir, DATASETS[name]),
                    dataset=name, output_dir=folder, per_class=_PER_CLASS.value, weights=weights,
                    augment_copies=copies, augmentations=_AUGMENTATIONS.value)
            except ValueError as error:
                sys.exit(f"extract_features failed: {error}")
            seconds = time.perf_counter() - started
            note = ("; train and validation reused" if train.reused and validation.reused else
                    "; validation reused" if validation.reused else "")
            train_cache = cache.read_cache(train.path)
            validation_cache = cache.read_cache(validation.path)
            for setting in settings:
                print(f"== {setting.head} head on {name}, augment_copies={copies}", flush=True)
                metrics = training.train_on_caches(
                    train_cache, validation_cache, setting,
                    os.path.join(output, name, "runs", f"copies{copies}_{setting.head}"), verbose=0)
                accuracy = metrics["val_accuracy"]
                baseline.setdefault((name, setting.head), accuracy)
                delta = 100 * (accuracy - baseline[name, setting.head])
                rows.append((name, copies, train.num_samples, f"{seconds:.1f}{note}", setting.head,
                             f"{accuracy:.3f}", f"{delta:+.1f}" if copies else "",
                             f"{metrics['fit_seconds']:.1f}"))

    table = common.markdown_table(["dataset", "copies", "train rows", "extraction s", "head", "val accuracy",
                       "Δ points", "head fit s"], rows)
    text = (f"MobileNetV2 @224 ({os.path.basename(weights)}), {_PER_CLASS.value} training images per "
            f"class, augmentations {_AUGMENTATIONS.value}; validation split never augmented.\n\n"
            f"{table}\n")
    common.write_results(output, text)
    print(f"Caches, heads and results.md: {output}")


if __name__ == "__main__":
    app.run(main)
