"""Trains a classifier head on cached bottleneck features.

Reads the training and validation caches written by extract_features, checks
that they come from the same network, weights, layer, pooling, input size,
preprocessing and class set, trains the head, prints the per-epoch log and a
summary, and writes to --output_dir the trained head (head.keras, or
head.joblib for logreg), history.csv, metrics.json and head_config.json.

Example:

  feature_extraction \
    --training_file=vgg16_cifar10_100_bottleneck_features_train.h5 \
    --validation_file=vgg16_cifar10_bottleneck_features_validation.h5

Heads: softmax (the Udacity lab's Flatten -> Dense), mlp (one hidden ReLU layer
with dropout), logreg (scikit-learn logistic regression on standardized
features).

Batch: give globs or comma lists of caches (paired by their own attributes) and
comma lists of settings (swept), e.g.

  feature_extraction --training_file='caches/*_train.h5' \
    --validation_file='caches/*_validation.h5' --head=softmax,mlp,logreg

Each job gets its own folder under --output_dir (default runs/), with
results.csv, results.md and results.png beside them; a failed job is reported,
the others go on, and the exit code is 1 if any failed.
"""

import sys

from absl import app
from absl import flags

from bin import cli
from classifiers import batch
from classifiers import heads

_TRAINING_FILE = flags.DEFINE_string(
    "training_file", None, "Training split cache (.h5); or a glob or comma-separated list of them "
    "for a batch.")
_VALIDATION_FILE = flags.DEFINE_string(
    "validation_file", None, "Validation split cache (.h5); or a glob or comma-separated list, "
    "paired with the training caches by their attributes.")
_HEAD = flags.DEFINE_list(
    "head", ["softmax"], f"Classifier head, one of {', '.join(heads.HEADS)}; a comma-separated "
    "list sweeps them.")
_HIDDEN_UNITS = flags.DEFINE_list(
    "hidden_units", ["256"], "Hidden layer width of the mlp head; a list sweeps.")
_DROPOUT = flags.DEFINE_list("dropout", ["0.5"], "Dropout rate of the mlp head; a list sweeps.")
_L2 = flags.DEFINE_list(
    "l2", ["0.0"], "L2 penalty on the kernels (logreg: C = 1/l2; 0 means C = 1); a list sweeps.")
_EARLY_STOPPING = flags.DEFINE_integer(
    "early_stopping", 0, "Stop after this many epochs without a lower val_loss and keep the "
    "best weights; 0 trains every epoch.", lower_bound=0)
# Shared flags, defined once in bin/cli.py.
flags.declare_key_flag("batch_size")
flags.declare_key_flag("seed")
flags.declare_key_flag("output_dir")
flags.declare_key_flag("epochs")
flags.declare_key_flag("learning_rate")


def _numbers(flag, kind, default=None):
    values = flag.value if flag.value is not None else default
    try:
        return [kind(value) for value in values]
    except ValueError:
        raise app.UsageError(f"Expected --{flag.name} to be a comma-separated list of "
                             f"{kind.__name__} values. Received: {','.join(values)}.") from None


def main(argv):
    cli.start(argv)
    rows, summary = cli.call(
        "feature_extraction",
        batch.train_heads,
        training_file=_TRAINING_FILE.value,
        validation_file=_VALIDATION_FILE.value,
        head=_HEAD.value,
        learning_rate=_numbers(cli.LEARNING_RATE, float, ["0.001"]),
        hidden_units=_numbers(_HIDDEN_UNITS, int),
        dropout=_numbers(_DROPOUT, float),
        l2=_numbers(_L2, float),
        epochs=cli.EPOCHS.value or 50,
        batch_size=cli.BATCH_SIZE.value or 256,
        early_stopping=_EARLY_STOPPING.value,
        seed=cli.SEED.value,
        output_dir=cli.OUTPUT_DIR.value,
    )
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
