"""Fine-tune a trained head end to end, with the top of its network, on the images.

A head trained by `classifiers.training.train_head` saw only cached features of
a frozen network. `fine_tune` starts from the model `export_model` builds for
that head (raw images -> `Resizing` -> the network's own `preprocess_input` ->
the network -> the head -> `ClassNames`), unfreezes the network from a named
layer (`unfreeze_from`) or its last `unfreeze_blocks` blocks, and trains the
whole thing on the images of the dataset the caches were extracted from, with a
small learning rate:

* BatchNormalization layers stay frozen (`trainable=False`) and the network is
  called with `training=False`, so their moving statistics, and any dropout
  inside the network, stay in inference mode (the Keras transfer-learning
  guide's advice: batch statistics of a small fine-tuning set would wreck the
  ImageNet ones). The head, dropout included, trains normally.
* The images are those of the caches: the same dataset, `per_class` selection,
  seed and validation split, checked against the `dataset_digest` recorded in
  the caches (`extraction.dataset_digest`). They are decoded and resized batch
  by batch, exactly as extraction does, so memory does not grow with the
  dataset; preprocessing happens inside the model, as at extraction.
* Validation accuracy is measured on the whole validation split before the
  first step (the end-to-end model then equals the head on cached features, a
  check of the images and preprocessing) and after every epoch, and reported
  next to the frozen-feature head's (its `metrics.json`).

Blocks: `block_names(network)` groups a network's layers by a per-family pattern
over layer names (`block5_conv1` -> `block5` for VGG, `conv5_block3_2_conv` ->
`conv5_block3` for ResNet and DenseNet, `block_16_expand` -> `block_16` for
MobileNetV2, ...; see `features.networks.BLOCK_PATTERNS`). A block starts right after the last
layer of the block before it, so unnamed layers between two blocks (a DenseNet
transition, an Inception module before its `mixedN` concatenation) belong to the
block they feed; leading ones without trainable weights are left out. Unfreezing the last N blocks
unfreezes every layer from the first layer of the N-th last block on, the
network's top (e.g. MobileNetV2's `Conv_1`) included.

The output folder (default `<head_dir>_fine_tuned`) is written all at once
(`pipeline.files.atomic_directory`): `model.keras` (the whole fine-tuned model;
`import bottleneck_cache.classifiers.export` registers its custom layers), `history.csv`,
`metrics.json` and `fine_tune_config.json`.
"""

import dataclasses
import difflib
import json
import math
import os
import re
import time
from typing import Optional

import numpy as np
from absl import logging

from bottleneck_cache.classifiers import predict
from bottleneck_cache.features import extraction
from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import checks
from bottleneck_cache.pipeline import datasets
from bottleneck_cache.pipeline import files

FINE_TUNE_CONFIG = "fine_tune_config.json"
HEAD_METRICS = "metrics.json"
OUTPUT_SUFFIX = "_fine_tuned"


@dataclasses.dataclass(frozen=True)
class FineTuneResult:
    """What `fine_tune` did.

    Attributes:
        output_dir: the folder written.
        head_val_accuracy: the frozen-feature head's validation accuracy (its
            `metrics.json`).
        val_accuracy: validation accuracy after fine-tuning (the last epoch's,
            on the whole validation split).
        num_trainable_layers: layers of the network that were trained (layers
            with trainable weights; BatchNormalization layers never are).
        unfrozen_from: the network layer from which on layers were unfrozen.
        seconds: wall time of the whole call.
        val_loss: validation cross-entropy after fine-tuning.
        epochs: epochs trained.
        start_val_accuracy: validation accuracy of the end-to-end model before
            fine-tuning: the head's own, unless images or preprocessing differ
            from the caches'.
        model: the fine-tuned `keras.Model`, in memory (not part of equality).
    """

    output_dir: str
    head_val_accuracy: float
    val_accuracy: float
    num_trainable_layers: int
    unfrozen_from: str
    seconds: float
    val_loss: float = float("nan")
    epochs: int = 0
    start_val_accuracy: float = float("nan")
    model: object = dataclasses.field(default=None, repr=False, compare=False)


def default_output_dir(head_dir):
    """`runs/x_softmax` -> `runs/x_softmax_fine_tuned`."""
    return os.path.normpath(head_dir) + OUTPUT_SUFFIX


# --------------------------------------------------------------------------------------------------
# Blocks and layers.


def _is_batch_norm(layer):
    import keras  # pylint: disable=g-import-not-at-top

    return isinstance(layer, keras.layers.BatchNormalization)


def _best_pattern(names):
    """`(family, [(layer index, block name)])` of the pattern that matches most layers, or None.

    A pattern whose blocks do not each form one run of layers (in the network's
    topological order) is not a block structure and is passed over.
    """
    best = None
    for family, pattern, name_format in networks.BLOCK_PATTERNS:
        matches = []
        for index, name in enumerate(names):
            match = re.search(pattern, name)
            if match:
                matches.append((index, name_format.format(*(g or "0" for g in match.groups()))))
        seen, contiguous = [], True
        for _, block in matches:
            if not seen or seen[-1] != block:
                contiguous = contiguous and block not in seen
                seen.append(block)
        if matches and contiguous and (best is None or len(matches) > len(best[1])):
            best = (family, matches)
    return best


def block_names(network):
    """Groups a network's layers into its blocks, by the names of its layers.

    Each pattern of `networks.BLOCK_PATTERNS` names a block after the groups it matches
    in a layer's name; the pattern that matches most layers wins. A block runs
    from the layer after the previous block's last layer (its own first
    matching layer for the first block) to its own last matching layer, less
    leading unnamed layers without trainable weights (an Xception residual
    add, a DenseNet transition's BatchNorm). Layers before the first block (the
    stem) and after the last one (the top) are in no block.

    Args:
        network: a `keras.Model` from `keras.applications` (or one cut at a layer).

    Returns:
        An ordered dict `{block name: [layer names]}`, input side first.

    Raises:
        ValueError: no pattern fits the layer names (e.g. NASNet).
    """
    names = [layer.name for layer in network.layers]
    best = _best_pattern(names)
    if best is None:
        families = ", ".join(family for family, _, _ in networks.BLOCK_PATTERNS)
        raise ValueError(
            f"Expected a network whose layer names mark its blocks ({families}). Received: "
            f"{network.name!r}, whose layers (e.g. {', '.join(names[1:4])}) follow none of those "
            "patterns. Pass --unfreeze_from=<layer name> instead (--list_layers lists them)."
        )
    first, last = {}, {}
    for index, block in best[1]:
        first.setdefault(block, index)
        last[block] = index
    blocks = {}
    start = best[1][0][0]
    for block, end in last.items():
        # Unnamed layers without trainable weights that lead into a block (an Xception residual
        # add, a transition's BatchNorm) are left to no block, so that it starts where training does.
        while start < first[block] and (_is_batch_norm(network.layers[start])
                                        or not network.layers[start].weights):
            start += 1
        blocks[block] = names[start:end + 1]
        start = end + 1
    return blocks


def layer_rows(network):
    """`[(index, name, block, kind)]` of a network's layers, for `--list_layers`.

    `kind` is `"BatchNorm (stays frozen)"`, `"weights"` (a layer that
    fine-tuning can train) or `""` (no weights).
    """
    try:
        owner = {name: block for block, names in block_names(network).items() for name in names}
    except ValueError:
        owner = {}
    rows = []
    for index, layer in enumerate(network.layers):
        kind = ("BatchNorm (stays frozen)" if _is_batch_norm(layer)
                else "weights" if layer.weights else "")
        rows.append((index, layer.name, owner.get(layer.name, ""), kind))
    return rows


def _start_layer(network, unfreeze_from, unfreeze_blocks):
    """The index of the network layer from which on layers are unfrozen."""
    names = [layer.name for layer in network.layers]
    if unfreeze_from is not None:
        if unfreeze_from in names:
            return names.index(unfreeze_from)
        close = difflib.get_close_matches(unfreeze_from, names, n=6, cutoff=0.6)
        if not close:  # Then the first layers of the last blocks, the usual choices.
            try:
                close = [layers[0] for layers in list(block_names(network).values())[-6:]]
            except ValueError:
                close = names[-6:]
        raise ValueError(
            f"Expected --unfreeze_from to name a layer of {network.name} ({len(names)} layers). "
            f"Received: {unfreeze_from!r}. Valid names near it: {', '.join(close)}. List them all "
            "with --list_layers (fine_tune.list_layers(head_dir))."
        )
    blocks = block_names(network)
    if unfreeze_blocks > len(blocks):
        raise ValueError(
            f"Expected --unfreeze_blocks between 1 and {len(blocks)}: {network.name} has "
            f"{len(blocks)} blocks ({', '.join(list(blocks)[:3])}, ..., {list(blocks)[-1]}). "
            f"Received: {unfreeze_blocks}. Pass a smaller number, or --unfreeze_from=<layer>."
        )
    return names.index(list(blocks.values())[-unfreeze_blocks][0])


def unfreeze(network, start):
    """Makes the network's layers from index `start` on trainable, except BatchNormalization.

    Returns:
        The number of layers with trainable weights.
    """
    network.trainable = True
    for index, layer in enumerate(network.layers):
        layer.trainable = index >= start and not _is_batch_norm(layer)
    return sum(1 for layer in network.layers if layer.trainable_weights)


def _find_parts(model):
    """`(resize, preprocess, network, head, class_names)` layers of an export model."""
    import keras  # pylint: disable=g-import-not-at-top

    # Functional models list their layers in topological order: the network comes before the head.
    submodels = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(submodels) != 2:
        raise ValueError(
            f"Expected the export model of a head to hold the network and the head. Received: "
            f"{model.name} with layers {', '.join(layer.name for layer in model.layers)}."
        )
    network, head = submodels
    return (model.get_layer("resize"), model.get_layer("preprocess"), network, head,
            model.get_layer("class_names"))


def build_fine_tune_model(head_dir, weights=None, unfreeze_from=None, unfreeze_blocks=None):
    """Builds the end-to-end model of a head, with its network unfrozen from a layer on.

    The layers are `classifiers.export.build_export_model`'s, wired again so that
    the network runs with `training=False` (BatchNorm and dropout in inference
    mode even while the model trains).

    Args:
        head_dir: a folder written by `classifiers.training.train_head`.
        weights: for a head extracted with a weights file, that file.
        unfreeze_from: a layer name of the network.
        unfreeze_blocks: the number of last blocks to unfreeze (exactly one of
            the two must be given).

    Returns:
        `(model, network, start)`: the uncompiled `keras.Model`, the network
        inside it, and the index of the first unfrozen network layer.

    Raises:
        ValueError: a bad head folder or weights, an unknown layer, too many
            blocks, or a network without recognizable blocks.
    """
    _check_unfreeze(unfreeze_from, unfreeze_blocks)
    import keras  # pylint: disable=g-import-not-at-top

    from bottleneck_cache.classifiers import export  # pylint: disable=g-import-not-at-top

    exported, _ = export.build_export_model(head_dir, weights)
    resize, preprocess, network, head, class_names = _find_parts(exported)
    start = _start_layer(network, unfreeze_from, unfreeze_blocks)
    unfreeze(network, start)
    head.trainable = True
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="images")
    x = preprocess(resize(inputs))
    x = network(x, training=False)
    outputs = class_names(head(x))
    model = keras.Model(inputs, outputs, name=f"{exported.name}_fine_tuned")
    return model, network, start


def list_layers(head_dir):
    """The `(index, name, block, kind)` rows of the network of a head (see `layer_rows`).

    The network is built with random weights: names do not depend on weights,
    so no weights file is needed.
    """
    config = predict.read_head_config(head_dir)
    _, network = predict.build_network({**config, "weights": "none"})
    return network.name, layer_rows(network)


def format_layers(name, rows):
    """The lines `fine_tune --list_layers` prints."""
    lines = [f"Layers of {name} (unfreeze from one with --unfreeze_from; blocks for --unfreeze_blocks):"]
    lines.extend(f"{index:5d}  {layer:<40s} {block:<16s} {kind}".rstrip()
                 for index, layer, block, kind in rows)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The data the head was trained on.


@dataclasses.dataclass(frozen=True)
class _TrainingData:
    """What identifies the images of a head's caches."""

    dataset: str
    per_class: int
    seed: int
    digests: dict


def _read_head_metrics(head_dir):
    path = os.path.join(head_dir, HEAD_METRICS)
    try:
        with open(path, encoding="utf-8") as f:
            metrics = json.load(f)
        float(metrics["val_accuracy"])
        return metrics
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"Expected {path}, the metrics feature_extraction wrote beside the head, with its "
            f"val_accuracy. Received: {type(error).__name__}: {error}. Train the head again."
        ) from None


def _training_data(head_dir, config, metrics):
    """Reads what the head's images were: from head_config.json, else from its caches.

    Raises:
        ValueError: the caches recorded in metrics.json are missing, invalid, or
            not those the head was trained on.
    """
    if {"dataset", "per_class", "dataset_digests"} <= set(config):
        return _TrainingData(config["dataset"], int(config["per_class"]), int(config.get("seed", 0)),
                             dict(config["dataset_digests"]))
    # This version of train_head records the dataset only in the caches it read.
    found = {}
    for split, key in (("train", "training_file"), ("validation", "validation_file")):
        path = metrics.get(key)
        try:
            if not path:
                raise cache.CacheError(f"{HEAD_METRICS} records no {key}")
            found[split] = cache.read_metadata(path)
        except (cache.CacheError, OSError) as error:
            raise ValueError(
                f"Expected the {split} cache the head in {head_dir} was trained on "
                f"({path or 'not recorded'}), to read its dataset, per_class, seed and digest from. "
                f"Received: {error}. Restore the cache (or extract it again with the same "
                "settings), or train the head again."
            ) from None
    (train, train_fingerprint), (validation, _) = found["train"], found["validation"]
    expected = config.get("training_fingerprint")
    if expected and train_fingerprint != expected:
        raise ValueError(
            f"Expected {metrics['training_file']} to be the cache the head in {head_dir} was trained "
            f"on (fingerprint {expected[:12]}). Received: a cache with fingerprint "
            f"{train_fingerprint[:12]}, extracted again with other settings or data since. "
            "Train the head again on it, or restore the old cache."
        )
    if (validation.split, validation.dataset) != ("validation", train.dataset):
        raise ValueError(
            f"Expected {metrics['validation_file']} to be the validation cache of dataset "
            f"{train.dataset!r}. Received: the {validation.split} split of {validation.dataset!r}. "
            "Train the head again."
        )
    return _TrainingData(train.dataset, train.per_class, train.seed,
                         {"train": train.dataset_digest, "validation": validation.dataset_digest})


def _load_splits(data, dataset_dir, dataset_format, validation_split, allow_pickle):
    """The splits the head's caches were extracted from, checked against their digests."""
    if dataset_dir is None and data.dataset != "digits":
        raise ValueError(
            f"Expected --dataset_dir: the head was trained on images of dataset {data.dataset!r}. "
            "Received: none (the bundled digits). Pass the --dataset_dir used with extract_features."
        )
    splits = datasets.prepare_splits(dataset_dir, dataset_format=dataset_format,
                                     per_class=data.per_class or None,
                                     validation_split=validation_split, seed=data.seed,
                                     allow_pickle=allow_pickle)
    where = dataset_dir if dataset_dir is not None else "the bundled digits"
    for name in cache.SPLITS:
        recorded = data.digests[name]
        if extraction.dataset_digest(splits[name]) != recorded:
            hint = ""
            if splits[name].seeded:
                per_class = f" and per_class={data.per_class}" if data.per_class else ""
                fraction = ("; if extract_features had another --validation_split, pass it too"
                            if splits["validation"].seeded else "")
                hint = f" The {name} split was chosen with seed {data.seed}{per_class}{fraction}."
            raise ValueError(
                f"Expected the images the head was trained on (dataset {data.dataset}, {name} split "
                f"digest {recorded[:12]}…); Received a dataset with another digest at {where}. Pass "
                f"the --dataset_dir used with extract_features.{hint}"
            )
    return splits


# --------------------------------------------------------------------------------------------------
# Training.


def _image_batches(split, input_size, batch_size, seed=None):
    """A `keras.utils.PyDataset` of `(float32 images 0-255, labels)` decoded batch by batch.

    With a `seed`, the order is a new seeded permutation every epoch. An image
    that cannot be decoded is left out (and logged once), as extraction does.
    """
    import keras  # pylint: disable=g-import-not-at-top

    class ImageBatches(keras.utils.PyDataset):
        """Loads each batch when Keras asks for it: memory does not grow with the split."""

        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self._rng = None if seed is None else np.random.default_rng(seed)
            self._order = np.arange(len(split))
            self._bad = set()
            self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(split) / batch_size)

        def _load(self, indices):
            indices = np.asarray([i for i in indices if i not in self._bad], dtype=np.int64)
            decoded = datasets.decode_images(split.image, indices, split.ids, input_size)
            self._bad.update(decoded.skipped_indices.tolist())
            return decoded.images, decoded.kept

        def __getitem__(self, index):
            images, kept = self._load(self._order[index * batch_size:(index + 1) * batch_size])
            position = 0
            while not len(kept):  # Every image of this batch is bad: take the next good one.
                if position >= len(split):
                    raise datasets.DatasetError(
                        f"Every image of the {split.name} split failed to decode. Expected readable "
                        "images; check --dataset_dir.")
                images, kept = self._load(self._order[position:position + 1])
                position += 1
            return images.astype(np.float32), split.labels[kept]

        def on_epoch_end(self):
            if self._rng is not None:
                self._order = self._rng.permutation(len(split))

    return ImageBatches()


def _check_unfreeze(unfreeze_from, unfreeze_blocks):
    if (unfreeze_from is None) == (unfreeze_blocks is None):
        raise ValueError(
            "Expected exactly one of --unfreeze_from (a layer name of the network) and "
            "--unfreeze_blocks (how many of its last blocks to train). Received: "
            f"{'both' if unfreeze_from is not None else 'neither'}."
        )
    if unfreeze_blocks is not None:
        checks.check_scalar(int(unfreeze_blocks) if not isinstance(unfreeze_blocks, bool) else 0,
                            "unfreeze_blocks", 1)
    if unfreeze_from is not None and not str(unfreeze_from).strip():
        raise ValueError("Expected --unfreeze_from to name a layer. Received: an empty name.")


def _check_options(epochs, batch_size, learning_rate):
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        checks.check_scalar(value, name, 1)
    checks.check_scalar(learning_rate, "learning_rate", 0, include_min=False)


@dataclasses.dataclass(frozen=True)
class FineTuneSettings:
    """Everything `fine_tune` is asked to do; `check` validates it once.

    Attributes:
        head_dir: a folder written by `classifiers.training.train_head`.
        dataset_dir: the dataset the caches were extracted from (its
            `--dataset_dir`); None for scikit-learn's digits.
        output_dir: where to write; default `<head_dir>_fine_tuned`.
        unfreeze_from: train the network from this layer on.
        unfreeze_blocks: train the network's last N blocks (see `block_names`).
            Exactly one of `unfreeze_from` and `unfreeze_blocks`.
        epochs: passes over the training images.
        learning_rate: Adam's learning rate (small: the network is pretrained).
        batch_size: images per gradient step.
        weights: for a head extracted with a weights file, that file.
        dataset_format: one of `pipeline.datasets.FORMATS`, or None to detect.
        allow_pickle: allow loading pickle files (they can run code).
        seed: seed of the shuffling and of the head's dropout; default the
            head's (the seed its caches record).
        overwrite: replace an existing output folder.
        verbose: Keras' verbosity (2: one line per epoch; 0: silent).
        validation_split: the extraction's `--validation_split`, for a dataset
            without its own validation split (the caches do not record it; the
            digest check catches a wrong one).
    """

    head_dir: str
    dataset_dir: Optional[str] = None
    output_dir: Optional[str] = None
    unfreeze_from: Optional[str] = None
    unfreeze_blocks: Optional[int] = None
    epochs: int = 5
    learning_rate: float = 1e-5
    batch_size: int = 32
    weights: Optional[str] = None
    dataset_format: Optional[str] = None
    allow_pickle: bool = False
    seed: Optional[int] = None
    overwrite: bool = False
    verbose: int = 2
    validation_split: float = 0.2

    def check(self):
        """Validates the options; returns the settings with `output_dir` filled in.

        Raises:
            ValueError: not exactly one of `unfreeze_from` and
                `unfreeze_blocks`, or a number out of range.
        """
        _check_unfreeze(self.unfreeze_from, self.unfreeze_blocks)
        _check_options(self.epochs, self.batch_size, self.learning_rate)
        return dataclasses.replace(self, output_dir=self.output_dir or default_output_dir(self.head_dir))

    @property
    def inputs(self):
        """The paths the output folder must not be, nor hold: the head, the dataset, a weights file."""
        weights_file = self.weights if self.weights not in (None, "imagenet", "none") else None
        return (self.head_dir, self.dataset_dir, weights_file)


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What `fine_tune` reads before it builds the model."""

    config: dict  # The head's head_config.json.
    head_metrics: dict  # The head's metrics.json.
    data: _TrainingData
    splits: dict  # Split name -> `datasets.Split`.
    seed: int


def _read_inputs(settings):
    """Reads and checks the head, its weights and its images; checks the output folder.

    Raises:
        ValueError: a bad head folder or weights, an existing output folder
            without `overwrite`, or a dataset whose digest differs from the caches'.
    """
    config = predict.read_head_config(settings.head_dir)
    predict.resolve_weights(config, settings.weights)  # Fails before any slow work.
    head_metrics = _read_head_metrics(settings.head_dir)
    files.check_output_dir(settings.output_dir, "--output_dir", settings.inputs, settings.overwrite)
    data = _training_data(settings.head_dir, config, head_metrics)
    seed = data.seed if settings.seed is None else int(settings.seed)
    splits = _load_splits(data, settings.dataset_dir, settings.dataset_format,
                          settings.validation_split, settings.allow_pickle)
    return _Inputs(config, head_metrics, data, splits, seed)


def _compile(model, learning_rate, num_classes, seed):
    """Compiles the model for sparse labels with Adam, after seeding Keras with `seed`."""
    import keras  # pylint: disable=g-import-not-at-top

    keras.utils.set_random_seed(seed)  # After building: random network weights have their own seed.
    metric_list = ["accuracy"]
    if num_classes >= 5:
        metric_list.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    # The head ends in a softmax (logreg becomes a Dense softmax): the model outputs probabilities.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False),
                  metrics=metric_list)


def _train(model, train, validation, settings, staging):
    """Evaluates, trains and saves the model, writing `history.csv` and `model.keras` to `staging`.

    Returns:
        `(last, start_logs, fit_seconds)`: the last epoch's logs, the
        validation logs before the first step, and the time `fit` took.
    """
    import keras  # pylint: disable=g-import-not-at-top

    # The end-to-end model before any step: the frozen-feature head's accuracy, unless the
    # images or their preprocessing differ from the caches'.
    start_logs = model.evaluate(validation, verbose=0, return_dict=True)
    fit_started = time.perf_counter()
    history = model.fit(train, validation_data=validation, epochs=settings.epochs, shuffle=False,
                        callbacks=[keras.callbacks.CSVLogger(os.path.join(staging, "history.csv"))],
                        verbose=settings.verbose)
    fit_seconds = time.perf_counter() - fit_started
    model.save(os.path.join(staging, "model.keras"))
    last = {key: float(values[-1]) for key, values in history.history.items()}
    return last, start_logs, fit_seconds


def _metrics(settings, inputs, network, start, trained, seconds):
    """The contents of the output's `metrics.json`; `trained` is what `_train` returned."""
    last, start_logs, fit_seconds = trained
    return {
        "val_accuracy": last["val_accuracy"],
        "val_loss": last["val_loss"],
        "train_accuracy": last["accuracy"],
        "train_loss": last["loss"],
        **({"val_top5_accuracy": last["val_top5_accuracy"]} if "val_top5_accuracy" in last else {}),
        "head_val_accuracy": float(inputs.head_metrics["val_accuracy"]),
        "head_val_loss": inputs.head_metrics.get("val_loss"),
        "start_val_accuracy": float(start_logs["accuracy"]),
        "start_val_loss": float(start_logs["loss"]),
        "unfrozen_from": network.layers[start].name,
        "unfreeze_blocks": settings.unfreeze_blocks,
        "num_trainable_layers": _num_trainable(network),
        "num_network_layers": len(network.layers),
        "epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
        "seed": inputs.seed,
        "num_train": len(inputs.splits["train"]),
        "num_validation": len(inputs.splits["validation"]),
        "fit_seconds": round(fit_seconds, 3),
        "seconds": round(seconds, 3),
    }


def _fine_tune_config(settings, inputs, unfrozen_from):
    """The contents of the output's `fine_tune_config.json`: what was asked and what it ran on."""
    return {
        "head_dir": os.path.abspath(settings.head_dir),
        "head_config": inputs.config,
        "dataset_dir": None if settings.dataset_dir is None else os.path.abspath(settings.dataset_dir),
        "dataset_format": settings.dataset_format,
        "dataset": inputs.data.dataset,
        "dataset_digests": inputs.data.digests,
        "per_class": inputs.data.per_class,
        "validation_split": settings.validation_split if inputs.splits["validation"].seeded else None,
        "weights": inputs.config["weights"],
        "unfreeze_from": settings.unfreeze_from,
        "unfreeze_blocks": settings.unfreeze_blocks,
        "unfrozen_from": unfrozen_from,
        "epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
        "seed": inputs.seed,
        "batch_norm": "frozen (inference mode)",
        "library_versions": json.loads(extraction.library_versions()),
    }


def _num_trainable(network):
    return sum(1 for layer in network.layers if layer.trainable_weights)


def fine_tune(head_dir, dataset_dir=None, **options):
    """Fine-tunes a trained head and the top of its network end to end on the images.

    See the module docstring. Options, head folder, weights, output folder and
    dataset digests are checked before the network is built; layer names and
    block counts once it is.

    Args:
        head_dir: a folder written by `classifiers.training.train_head`.
        dataset_dir: the dataset the caches were extracted from (its
            `--dataset_dir`); None for scikit-learn's digits.
        **options: the other fields of `FineTuneSettings` (each documented
            there), e.g. `unfreeze_blocks`, `epochs`, `output_dir`, `weights`.

    Returns:
        A `FineTuneResult`.

    Raises:
        ValueError: bad options, head folder, weights or dataset (one whose
            digest differs from the caches'), an existing output folder
            without `overwrite`, or an unknown layer.
        TypeError: an option that `FineTuneSettings` does not have.
    """
    started = time.perf_counter()
    settings = FineTuneSettings(head_dir, dataset_dir, **options).check()
    inputs = _read_inputs(settings)
    model, network, start = build_fine_tune_model(head_dir, settings.weights, settings.unfreeze_from,
                                                  settings.unfreeze_blocks)
    _compile(model, settings.learning_rate, len(inputs.config["class_names"]), inputs.seed)
    input_size = tuple(inputs.config["input_size"])
    train = _image_batches(inputs.splits["train"], input_size, settings.batch_size, seed=inputs.seed)
    validation = _image_batches(inputs.splits["validation"], input_size, settings.batch_size)
    unfrozen_from = network.layers[start].name
    logging.info("Fine-tuning %s from layer %s on (%d layers with weights) with %d training and %d "
                 "validation images.", network.name, unfrozen_from, _num_trainable(network),
                 len(inputs.splits["train"]), len(inputs.splits["validation"]))
    with files.atomic_directory(settings.output_dir, "--output_dir", settings.inputs,
                                settings.overwrite, command="fine_tune") as staging:
        trained = _train(model, train, validation, settings, staging)
        seconds = time.perf_counter() - started
        results = _metrics(settings, inputs, network, start, trained, seconds)
        files.write_json(os.path.join(staging, "metrics.json"), results)
        files.write_json(os.path.join(staging, FINE_TUNE_CONFIG),
                         _fine_tune_config(settings, inputs, unfrozen_from))
    return FineTuneResult(output_dir=settings.output_dir, head_val_accuracy=results["head_val_accuracy"],
                          val_accuracy=results["val_accuracy"],
                          num_trainable_layers=results["num_trainable_layers"],
                          unfrozen_from=unfrozen_from, seconds=seconds, val_loss=results["val_loss"],
                          epochs=settings.epochs, start_val_accuracy=results["start_val_accuracy"],
                          model=model)


def format_summary(result):
    """One line: the accuracy after fine-tuning next to the frozen-feature head's."""
    change = 100.0 * (result.val_accuracy - result.head_val_accuracy)
    return (
        f"val_accuracy {result.val_accuracy:.3f} after fine-tuning (frozen-feature head: "
        f"{result.head_val_accuracy:.3f}, {change:+.1f} points), unfrozen from "
        f"{result.unfrozen_from} ({result.num_trainable_layers} layers), {result.seconds:.1f} s "
        f"→ {result.output_dir}"
    )
