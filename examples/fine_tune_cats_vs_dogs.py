"""Frozen features against fine-tuning, on real photos: MobileNetV2 on cats vs dogs.

Runs the project's own API, in three stages, and prints a table of validation
accuracy and time per stage:

1. `extract_features`: MobileNetV2 (ImageNet weights) over cats-vs-dogs-mini/
   in --data_dir (Kaggle's Dogs vs. Cats photos: train/{cats,dogs}/*.jpg and
   val/{cats,dogs}/*.jpg, e.g. 200 and 100 per class), --per_class training
   images per class (the validation split is kept whole);
2. `train_head`: the lab's softmax head on the cached features (50 epochs,
   Adam 1e-3, batch 256: the command's defaults);
3. `fine_tune`: that head and the last --unfreeze_blocks blocks of MobileNetV2,
   end to end on the images, once per --learning_rate.

Weights: with --weights=imagenet (the default), the Keras file
mobilenet_v2_1.00_224_no_top.weights.h5 in --weights_dir, else Keras downloads
them; --weights=PATH names a file directly.

Example (from the repository root; about 5-10 minutes on 2 CPU cores):

  .venv/bin/python examples/fine_tune_cats_vs_dogs.py --data_dir=DATA --weights_dir=WEIGHTS \\
      --output_dir=/tmp/fine_tune_cats_vs_dogs

Everything is written under --output_dir (caches, head, fine-tuned models, and
results.md with the table); nothing goes into the repository.
"""

import os
import sys
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from examples import common  # pylint: disable=wrong-import-position

_DATA_DIR = flags.DEFINE_string(
    "data_dir", common.DATA_DIR,
    f"Folder holding cats-vs-dogs-mini/: {common.DATASETS['cats-vs-dogs-mini']} (or that folder itself).")
_WEIGHTS = flags.DEFINE_string(
    "weights", "imagenet", "MobileNetV2 ImageNet weights: 'imagenet' (the Keras file in --weights_dir, "
    "else downloaded by Keras) or a path to a Keras weights file without the top.")
_WEIGHTS_DIR = flags.DEFINE_string("weights_dir", common.WEIGHTS_DIR,
                                   common.weights_help(["mobilenet_v2"]))
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "/tmp/fine_tune_cats_vs_dogs", "Where everything goes.")
_PER_CLASS = flags.DEFINE_integer("per_class", 100, "Training images per class.", lower_bound=1)
_UNFREEZE_BLOCKS = flags.DEFINE_integer("unfreeze_blocks", 2, "Last blocks of MobileNetV2 to train.",
                                        lower_bound=1)
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Fine-tuning epochs.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_list("learning_rate", ["1e-5", "1e-4"],
                                   "Adam learning rates of fine-tuning; one run each.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per fine-tuning step.", lower_bound=1)


def _table(rows):
    header = ("stage", "what", "val_accuracy", "val_loss", "seconds")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def main(argv):
    del argv  # Unused.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bottleneck_cache.classifiers import fine_tune  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.classifiers import training  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import extraction  # pylint: disable=g-import-not-at-top

    output = common.output_dir(_OUTPUT_DIR.value)
    try:
        data_dir = common.dataset_folder(_DATA_DIR.value, "cats-vs-dogs-mini")
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    weights = common.resolve_weights(_WEIGHTS.value, "mobilenet_v2", _WEIGHTS_DIR.value)
    if weights not in ("imagenet", "none") and not os.path.isfile(weights):
        raise app.UsageError(
            f"Expected a MobileNetV2 weights file at {weights}. Received: no such file. Pass --weights=<a "
            "Keras weights file without the top>, or --weights=imagenet with --weights_dir=<folder holding "
            f"{common.WEIGHTS_FILES['mobilenet_v2', False]}> (or on a machine with internet).")
    rows = []

    started = time.perf_counter()
    results = extraction.extract_features(
        network="mobilenet_v2", dataset_dir=data_dir, output_dir=os.path.join(output, "caches"),
        per_class=_PER_CLASS.value, weights=weights)
    seconds = time.perf_counter() - started
    reused = " (reused)" if all(r.reused for r in results) else ""
    rows.append(("1. extract_features", f"MobileNetV2 @224, {results[0].num_samples} train + "
                 f"{results[1].num_samples} validation images{reused}", "", "", f"{seconds:.1f}"))

    head_dir = os.path.join(output, "runs", f"mobilenet_v2_cats-vs-dogs_{_PER_CLASS.value}_softmax")
    started = time.perf_counter()
    head = training.train_head(results[0].path, results[1].path, head="softmax", output_dir=head_dir)
    seconds = time.perf_counter() - started
    rows.append(("2. frozen-feature head", "softmax, 50 epochs, Adam 1e-3, batch 256",
                 f"{head['val_accuracy']:.3f}", f"{head['val_loss']:.3f}", f"{seconds:.1f}"))

    for text in _LEARNING_RATE.value:
        learning_rate = float(text)
        result = fine_tune.fine_tune(
            head_dir, data_dir, output_dir=f"{head_dir}_fine_tuned_lr{text}",
            unfreeze_blocks=_UNFREEZE_BLOCKS.value, epochs=_EPOCHS.value,
            learning_rate=learning_rate, batch_size=_BATCH_SIZE.value, weights=weights,
            overwrite=True)
        print(fine_tune.format_summary(result))
        if len(rows) == 2:  # Measured by every run, before its first step; the same each time.
            rows.append(("2b. the same head, end to end on the images", "before any fine-tuning step",
                         f"{result.start_val_accuracy:.3f}", "", ""))
        rows.append((
            "3. fine_tune",
            f"last {_UNFREEZE_BLOCKS.value} blocks (from {result.unfrozen_from}, "
            f"{result.num_trainable_layers} layers) + head, {result.epochs} epochs, Adam {text}, "
            f"batch {_BATCH_SIZE.value}",
            f"{result.val_accuracy:.3f}", f"{result.val_loss:.3f}", f"{result.seconds:.1f}"))

    table = _table(rows)
    common.write_results(output, table)


if __name__ == "__main__":
    app.run(main)
