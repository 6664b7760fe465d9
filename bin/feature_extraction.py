"""Trains a classifier head on cached bottleneck features.

Reads the training and validation caches written by extract_features, checks
that they come from the same network, weights, layer, pooling, input size,
preprocessing and class set, trains the head, prints the per-epoch log and a
summary, and writes to --output_dir the trained head (head.npz: weights,
standardization, class names and settings), history.csv, metrics.json,
head_config.json, class_report.csv and misclassified.csv (--plots: also
history.png and confusion_matrix.png).

Example:

  feature_extraction \
    --training_file=vgg16_cifar10_100_bottleneck_features_train.h5 \
    --validation_file=vgg16_cifar10_bottleneck_features_validation.h5

Heads: softmax (the Udacity lab's Flatten -> Dense), mlp (one hidden ReLU layer
with dropout), logreg (multinomial logistic regression, L-BFGS; --l2=auto picks
its penalty by cross-validation on the training split). Every head standardizes
its features (mean and scale of the training split, stored in the head).

Batch: give globs or comma lists of caches (paired by their own attributes) and
comma lists of settings (swept), e.g.

  feature_extraction --training_file='caches/*_train.h5' \
    --validation_file='caches/*_validation.h5' --head=softmax,mlp,logreg

Each job gets its own folder under --output_dir (default runs/), with
results.csv and results.md (--plots: results.png) beside them; heads of one
shape on one pair of caches (e.g. several learning rates) train together; a
failed job is reported, the others go on, and the exit code is 1 if any failed.
"""

import sys

from absl import app
from absl import flags

from bottleneck_cache.bin import cli
from bottleneck_cache.classifiers import batch
from bottleneck_cache.classifiers import heads

_TRAINING_FILE = flags.DEFINE_string(
    "training_file", None, "Training split cache (.h5, or the Udacity lab's .p pickle); or a glob "
    "or comma-separated list of them for a batch.")
_VALIDATION_FILE = flags.DEFINE_string(
    "validation_file", None, "Validation split cache (.h5 or .p); or a glob or comma-separated "
    "list, paired with the training caches by their attributes.")
_HEAD = flags.DEFINE_list(
    "head", ["softmax"], f"Classifier head, one of {', '.join(heads.HEADS)}; a comma-separated "
    "list sweeps them.")
_HIDDEN_UNITS = flags.DEFINE_list(
    "hidden_units", ["256"], "Hidden layer width of the mlp head; a list sweeps.")
_DROPOUT = flags.DEFINE_list("dropout", ["0.5"], "Dropout rate of the mlp head; a list sweeps.")
_L2 = flags.DEFINE_list(
    "l2", ["0.0"], "L2 penalty on the kernels (logreg: C = 1/l2; 0 means C = 1), or 'auto' "
    "(logreg: chosen by 5-fold cross-validation on the training split); a list sweeps.")
_WORKERS = flags.DEFINE_integer(
    "workers", 1, "Processes for a batch: pairs of caches that share no file train in parallel, "
    "one BLAS thread each. Worth it only with idle cores.", lower_bound=1)
_PLOTS = flags.DEFINE_boolean(
    "plots", False, "Also draw history.png and confusion_matrix.png per head (and results.png "
    "for a batch); about 0.5 s for matplotlib's import plus ~0.1 s a plot.")
_EARLY_STOPPING = flags.DEFINE_integer(
    "early_stopping", 0, "Stop after this many epochs without a lower val_loss and keep the "
    "best weights; 0 trains every epoch.", lower_bound=0)
# Shared flags, defined once in bin/cli.py.
cli.adopt(__name__, "batch_size", "seed", "output_dir", "epochs", "learning_rate")


def _numbers(flag, kind, default=None, what=None):
    values = flag.value if flag.value is not None else default
    try:
        return [kind(value) for value in values]
    except ValueError:
        raise app.UsageError(f"Expected --{flag.name} to be a comma-separated list of "
                             f"{what or kind.__name__} values. Received: {','.join(values)}.") from None


def _penalty(value):
    """A float, or "auto"."""
    return "auto" if value.strip().lower() == "auto" else float(value)


def main(argv):
    cli.start(argv)
    rows, summary = cli.call(
        "feature_extraction", batch.train_heads,
        _TRAINING_FILE, _VALIDATION_FILE, _HEAD, _EARLY_STOPPING, cli.SEED, cli.OUTPUT_DIR, _PLOTS,
        _WORKERS, cli.EPOCHS, cli.BATCH_SIZE,
        learning_rate=_numbers(cli.LEARNING_RATE, float, ["0.001"]),
        hidden_units=_numbers(_HIDDEN_UNITS, int),
        dropout=_numbers(_DROPOUT, float),
        l2=_numbers(_L2, _penalty, what="float (or 'auto')"))
    print(summary)
    if any(row.get("error") for row in rows):
        raise SystemExit(1)


def run():
    """The `feature_extraction` console script."""
    cli.run(main, sys.modules[__name__], required=["training_file", "validation_file"],
            interrupted="The output folder of the head being trained was left as it was (a "
            "batch keeps its finished jobs); run the same command again.")


if __name__ == "__main__":
    run()
