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
"""

import sys

from absl import app
from absl import flags

from bin import cli
from classifiers import heads

_TRAINING_FILE = flags.DEFINE_string("training_file", None, "Training split cache (.h5).")
_VALIDATION_FILE = flags.DEFINE_string("validation_file", None, "Validation split cache (.h5).")
_HEAD = flags.DEFINE_enum("head", "softmax", heads.HEADS, "Classifier head.")
_EPOCHS = flags.DEFINE_integer("epochs", 50, "Training epochs (Keras heads).", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", 1e-3, "Adam learning rate (Keras heads).", lower_bound=0.0)
_HIDDEN_UNITS = flags.DEFINE_integer(
    "hidden_units", 256, "Hidden layer width of the mlp head.", lower_bound=1)
_DROPOUT = flags.DEFINE_float(
    "dropout", 0.5, "Dropout rate of the mlp head.", lower_bound=0.0, upper_bound=0.99)
_L2 = flags.DEFINE_float(
    "l2", 0.0, "L2 penalty on the kernels (logreg: C = 1/l2; 0 means C = 1).", lower_bound=0.0)
_EARLY_STOPPING = flags.DEFINE_integer(
    "early_stopping", 0, "Stop after this many epochs without a lower val_loss and keep the "
    "best weights; 0 trains every epoch.", lower_bound=0)
flags.adopt_module_key_flags(cli)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    cli.quiet_tensorflow()
    from classifiers import training  # pylint: disable=g-import-not-at-top

    results = cli.call(
        "feature_extraction",
        training.train_head,
        training_file=_TRAINING_FILE.value,
        validation_file=_VALIDATION_FILE.value,
        head=_HEAD.value,
        epochs=_EPOCHS.value,
        batch_size=cli.BATCH_SIZE.value or 256,
        learning_rate=_LEARNING_RATE.value,
        hidden_units=_HIDDEN_UNITS.value,
        dropout=_DROPOUT.value,
        l2=_L2.value,
        early_stopping=_EARLY_STOPPING.value,
        seed=cli.SEED.value,
        output_dir=cli.OUTPUT_DIR.value,
    )
    print(training.format_summary(results))


def run():
    """The `feature_extraction` console script."""
    cli.run(main, sys.modules[__name__], required=["training_file", "validation_file"])


if __name__ == "__main__":
    run()
