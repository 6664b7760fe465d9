"""The Udacity transfer-learning lab's table, reproduced on this project's API.

Udacity's CarND lab (`run_bottleneck.py`, `feature_extraction.py`) extracts
the bottleneck features of VGG16, InceptionV3 and ResNet50 on CIFAR-10 and the
German traffic signs (GTSRB), 100 training images per class, trains a softmax
head on each, and compares validation accuracies in one table. This script does
the same with `features.extraction.extract_features` and `classifiers.batch`:

1. for every network x dataset, extract the features (--per_class training
   images per class; the validation split is kept whole, as in the lab);
2. train every head of --heads on every pair of caches, in one process
   (`softmax` is the lab's Flatten -> Dense; `logreg` is scikit-learn's
   multinomial logistic regression);
3. print the lab's table (network x dataset validation accuracy) and the time
   each stage took.

Weights: a network whose Keras ImageNet weights file is in --weights_dir runs
with it (MobileNetV2 `mobilenet_v2_1.00_224_no_top.weights.h5`, MobileNet
`mobilenet_1_0_224_tf_no_top.weights.h5`, VGG16
`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`); any other network runs
with weights=imagenet, which Keras downloads on first use. On a machine with
internet, add the lab's own networks:

  .venv/bin/python examples/udacity_lab_table.py \\
      --networks=mobilenet_v2,mobilenet,vgg16,inception_v3,resnet50

Without internet a network whose weights cannot be had is reported in the
table as failed (with the reason) and the others go on.

Example (from the repository root; 16 minutes on 2 CPU cores shared with other
jobs, less on an idle machine):

  .venv/bin/python examples/udacity_lab_table.py --data_dir=DATA --weights_dir=WEIGHTS

Data: --data_dir holds cifar10-mini/ (CIFAR-10 as JPEGs, train/<class>/ with
100 images per class from the CIFAR train split and val/<class>/ with 100 per
class from its test split; or Krizhevsky's python batches) and gtsrb-mini/ (the
German traffic signs in GTSRB's official layout, Final_Training/Images/000NN/
with GT-000NN.csv and Final_Test/Images/ with GT-final_test.csv). Everything is
written under --output_dir (caches, one folder per head, results.md with the
tables); running the same command again reuses the caches.

From the lab's own files: with --from_pickles=DIR, the table is made from the
lab's precomputed bottleneck pickles in DIR
({network}_{dataset}[_{N}]_bottleneck_features_{train,validation}.p, e.g.
vgg_cifar10_100_bottleneck_features_train.p), read directly as caches (with a
data-only unpickler: no code in them runs); stage one is skipped:

  .venv/bin/python examples/udacity_lab_table.py --from_pickles=~/lab/bottlenecks
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

# The lab's datasets: name in the cache files -> (folder under --data_dir, label in the table).
DATASETS = {"cifar10": ("cifar10-mini", "CIFAR-10"), "gtsrb": ("gtsrb-mini", "GTSRB")}

_DATA_DIR = flags.DEFINE_string(
    "data_dir", common.DATA_DIR,
    "Folder holding the datasets: " + "; ".join(f"{folder}/: {common.DATASETS[folder]}"
                                                 for folder, _ in DATASETS.values()) + ".")
_WEIGHTS_DIR = flags.DEFINE_string(
    "weights_dir", common.WEIGHTS_DIR, common.weights_help(["mobilenet_v2", "mobilenet", "vgg16"]))
_NETWORKS = flags.DEFINE_list(
    "networks", ["mobilenet_v2", "mobilenet"],
    "Networks to compare (registry names or the lab's aliases vgg, resnet, inception).")
_DATASETS = flags.DEFINE_list("datasets", list(DATASETS),
                              f"Datasets to compare, a comma list of {', '.join(DATASETS)}.")
flags.register_validator("datasets", lambda names: set(names) <= set(DATASETS),
                         f"Expected --datasets to be a comma list of {', '.join(DATASETS)}.")
_HEADS = flags.DEFINE_list("heads", ["softmax", "logreg"], "Heads to train on every pair of caches.")
_PER_CLASS = flags.DEFINE_integer("per_class", 100, "Training images per class.", lower_bound=1)
_EPOCHS = flags.DEFINE_integer("epochs", 50, "Epochs of the softmax and mlp heads (the lab's 50).",
                               lower_bound=1)
_FROM_PICKLES = flags.DEFINE_string(
    "from_pickles", None, "Folder of the lab's bottleneck pickles "
    "(*_bottleneck_features_{train,validation}.p): make the table from them, skipping extraction.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", os.path.join(tempfile.gettempdir(), "bottleneck-cache-examples",
                               "udacity_lab_table"),
    "Where the caches, heads and results.md go (outside the repository).")



def _check_paths(data_dir):
    for name in _DATASETS.value:
        folder = os.path.join(data_dir, DATASETS[name][0])
        if not os.path.isdir(folder):
            raise app.UsageError(
                f"Expected a folder {DATASETS[name][0]}/ in --data_dir holding "
                f"{common.DATASETS[DATASETS[name][0]]}. Received: no such folder at {folder}. Pass "
                f"--data_dir=<folder holding {DATASETS[name][0]}/>, or --datasets to leave {name} out.")


def _weights(network, weights_dir):
    from bottleneck_cache.features import networks  # pylint: disable=g-import-not-at-top

    return common.weights_file(networks.get_network(network).name, weights_dir) or "imagenet"


def _table_from_pickles(folder, output, settings):
    """The lab's table from its own pickles: every head on every train/validation pair in `folder`."""
    from bottleneck_cache.classifiers import batch  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top

    folder = os.path.abspath(os.path.expanduser(folder))
    try:
        trains = batch.expand_files(os.path.join(folder, "*_bottleneck_features_train.p"), "from_pickles")
        validations = batch.expand_files(os.path.join(folder, "*_bottleneck_features_validation.p"),
                                         "from_pickles")
        pairs = batch.pair_caches(trains, validations)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    started = time.perf_counter()
    rows = batch.run_jobs(batch.make_jobs(pairs, settings), os.path.join(output, "runs"))
    seconds = time.perf_counter() - started
    cells, columns, networks = {}, {}, {}
    for row in rows:
        metadata, _ = cache.read_metadata(row["training_file"])
        column = (f"{metadata.dataset} ({metadata.per_class}/class)" if metadata.per_class
                  else metadata.dataset)
        columns[column] = networks[metadata.network] = None
        cells[metadata.network, column, row["head"]] = (
            "failed" if row.get("error") else f"{row['val_accuracy']:.3f}")
    table = common.markdown_table(
        ["network", "head", *(f"{column} val accuracy" for column in columns)],
        [(network, head, *(cells.get((network, column, head), "") for column in columns))
         for network in networks for head in _HEADS.value])
    common.write_results(output, (
        f"Validation accuracy on the lab's bottleneck pickles in {folder} (softmax and mlp "
        f"heads {_EPOCHS.value} epochs, Adam 1e-3, batch 256; {len(rows)} heads in {seconds:.1f} s):\n\n"
        f"{table}\n"))
    print(f"Heads and results.md: {output}")


def main(argv):
    common.start(argv)
    from bottleneck_cache.classifiers import batch  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.classifiers import training  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import extraction  # pylint: disable=g-import-not-at-top

    output = common.output_dir(_OUTPUT_DIR.value)
    if _FROM_PICKLES.value:
        try:
            settings = batch.sweep(training.HeadSettings(epochs=_EPOCHS.value), head=_HEADS.value)
        except ValueError as error:
            raise app.UsageError(str(error)) from None
        _table_from_pickles(_FROM_PICKLES.value, output, settings)
        return
    data_dir = os.path.abspath(_DATA_DIR.value)
    _check_paths(data_dir)
    try:
        settings = batch.sweep(training.HeadSettings(epochs=_EPOCHS.value), head=_HEADS.value)
        weights = {n: _weights(n, os.path.abspath(_WEIGHTS_DIR.value)) for n in _NETWORKS.value}
    except ValueError as error:
        raise app.UsageError(str(error)) from None

    # Stage one: one extraction per network and dataset; a network that cannot be built
    # (e.g. ImageNet weights without internet) is reported, and the others go on.
    pairs, extracted = [], {}
    for network in _NETWORKS.value:
        for name in _DATASETS.value:
            print(f"== extract_features: {network} on {name} (weights: "
                  f"{os.path.basename(weights[network])})", flush=True)
            started = time.perf_counter()
            try:
                train, validation = extraction.extract_features(
                    network=network, dataset_dir=os.path.join(data_dir, DATASETS[name][0]),
                    dataset=name, output_dir=os.path.join(output, "caches"),
                    per_class=_PER_CLASS.value, weights=weights[network])
            except ValueError as error:
                print(f"FAILED {network} on {name}: {error}", flush=True)
                extracted[network, name] = error
                continue
            extracted[network, name] = (train, validation, time.perf_counter() - started)
            pairs.append((train.path, validation.path))

    # Stage two: every head on every pair of caches, in one process.
    started = time.perf_counter()
    rows = batch.run_jobs(batch.make_jobs(pairs, settings), os.path.join(output, "runs"))
    heads_seconds = time.perf_counter() - started
    by_job = {(row["training_file"], row["head"]): row for row in rows}

    def accuracy(network, name, head):
        done = extracted[network, name]
        if isinstance(done, Exception):
            return "failed"
        row = by_job[done[0].path, head]
        return "failed" if row.get("error") else f"{row['val_accuracy']:.3f}"

    lab = common.markdown_table(
        ["network", "weights", "head", *(f"{DATASETS[n][1]} val accuracy" for n in _DATASETS.value)],
        [(network, os.path.basename(weights[network]), head,
          *(accuracy(network, name, head) for name in _DATASETS.value))
         for network in _NETWORKS.value for head in _HEADS.value])
    timing_rows = []
    for network in _NETWORKS.value:
        for name in _DATASETS.value:
            done = extracted[network, name]
            if isinstance(done, Exception):
                timing_rows.append((network, DATASETS[name][1], "", "", "failed: " + str(done)[:120],
                                    *[""] * len(_HEADS.value)))
                continue
            train, validation, seconds = done
            fits = []
            for head in _HEADS.value:
                row = by_job[train.path, head]
                fits.append("failed" if row.get("error") else f"{row['fit_seconds']:.1f}")
            reused = " (reused)" if train.reused and validation.reused else ""
            timing_rows.append((network, DATASETS[name][1], train.num_samples,
                                validation.num_samples, f"{seconds:.1f}{reused}", *fits))
    timing = common.markdown_table(["network", "dataset", "train images", "validation images", "extraction s",
                        *(f"{head} fit s" for head in _HEADS.value)], timing_rows)
    text = (f"Validation accuracy, {_PER_CLASS.value} training images per class, input 224, "
            f"average pooling, softmax and mlp heads {_EPOCHS.value} epochs (Adam 1e-3, batch 256):"
            f"\n\n{lab}\n\n"
            f"Time per stage (stage two, all {len(rows)} heads in one process: "
            f"{heads_seconds:.1f} s):\n\n{timing}\n")
    common.write_results(output, text)
    print(f"Caches, heads and results.md: {output}")


if __name__ == "__main__":
    app.run(main)
