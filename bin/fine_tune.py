"""Fine-tunes a head trained by feature_extraction, end to end with the top of its network.

Starts from the model export_model would write for --head_dir (raw images ->
resize -> the network's own preprocess_input -> the network -> the head),
unfreezes the network from a layer (--unfreeze_from) or its last blocks
(--unfreeze_blocks; exactly one of the two), and trains it on the images the
head's caches were extracted from, with a small learning rate (Adam). The
images are checked against the dataset digest recorded in the caches, so pass
the --dataset_dir (and --dataset_format, --allow_pickle) used with
extract_features. BatchNormalization layers stay frozen, in inference mode.

Prints Keras' per-epoch log and one line comparing the validation accuracy with
the frozen-feature head's, and writes to --output_dir (default
<head_dir>_fine_tuned), all at once: model.keras (the whole fine-tuned model,
images of any size 0-255 in, class probabilities out), history.csv,
metrics.json and fine_tune_config.json.

Example:

  fine_tune --head_dir=runs/mobilenet_v2_cifar10_100_softmax --dataset_dir=data/cifar10 \\
    --unfreeze_blocks=2 --epochs=5

List the network's layers and blocks (for --unfreeze_from, --unfreeze_blocks):

  fine_tune --head_dir=runs/mobilenet_v2_cifar10_100_softmax --list_layers

--seed (shuffling, the head's dropout) defaults to the seed the head's caches
record. A head extracted with --weights=PATH needs the same file here
(--weights=PATH).

Load the result in Python (importing bottleneck_cache.classifiers.export registers the model's
custom layers):

  import keras
  from bottleneck_cache.classifiers import export
  model = keras.models.load_model("runs/mobilenet_v2_cifar10_100_softmax_fine_tuned/model.keras")
"""

import sys

from absl import app
from absl import flags

from bottleneck_cache.bin import cli


_UNFREEZE_FROM = flags.DEFINE_string(
    "unfreeze_from", None, "Train the network from this layer on (a layer name; see "
    "--list_layers).")
_UNFREEZE_BLOCKS = flags.DEFINE_integer(
    "unfreeze_blocks", None, "Train the network's last N blocks (e.g. VGG block5, ResNet "
    "conv5_block3, MobileNetV2 block_16; see --list_layers).", lower_bound=1)
_LIST_LAYERS = flags.DEFINE_boolean(
    "list_layers", False, "Print the network's layers with their blocks, and exit.")
# Shared flags, defined once in bin/cli.py.
cli.adopt(__name__, "head_dir", "weights", "batch_size", "seed", "output_dir", "overwrite",
          "dataset_dir", "dataset_format", "allow_pickle", "validation_split", "epochs",
          "learning_rate")


def _learning_rate():
    """--learning_rate: one number here (feature_extraction's may be a list that sweeps)."""
    values = cli.LEARNING_RATE.value or ["1e-5"]
    try:
        (value,) = values
        return float(value)
    except ValueError:
        raise app.UsageError(f"Expected one number for --learning_rate. Received: "
                             f"{','.join(values)}.") from None


def main(argv):
    cli.start(argv)
    from bottleneck_cache.classifiers import fine_tune  # pylint: disable=g-import-not-at-top

    if _LIST_LAYERS.value:
        name, rows = cli.call("fine_tune", fine_tune.list_layers, head_dir=cli.HEAD_DIR.value)
        print(fine_tune.format_layers(name, rows))
        return
    result = cli.call(
        "fine_tune", fine_tune.fine_tune,
        cli.HEAD_DIR, cli.DATASET_DIR, cli.OUTPUT_DIR, _UNFREEZE_FROM, _UNFREEZE_BLOCKS, cli.WEIGHTS,
        cli.DATASET_FORMAT, cli.ALLOW_PICKLE, cli.OVERWRITE, cli.VALIDATION_SPLIT, cli.EPOCHS,
        cli.BATCH_SIZE, learning_rate=_learning_rate(),
        seed=cli.SEED.value if cli.SEED.present else None)
    print(fine_tune.format_summary(result))


def run():
    """The `fine_tune` console script."""
    cli.run(main, sys.modules[__name__], required=["head_dir"],
            interrupted="--output_dir was left as it was; run the same command again.")


if __name__ == "__main__":
    run()
