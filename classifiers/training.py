"""Stage two: train a head on a pair of cached splits and save what it learned."""

import csv
import dataclasses
import json
import os
import time

import numpy as np

from classifiers import evaluation
from classifiers import heads
from pipeline import cache
from pipeline import files

# Attributes that must agree between the training and the validation cache.
_PAIRED_ATTRIBUTES = ("network", "weights", "weights_sha256", "layer", "pooling", "input_size",
                      "preprocessing", "precision")


def check_pair(train, validation):
    """Refuses a train/validation pair whose features are not comparable.

    Args:
        train: the training `Cache`.
        validation: the validation `Cache`.

    Raises:
        ValueError: a file holds the other split; the two differ in dataset,
            network, weights, layer, pooling, input size, preprocessing, class
            names or feature shape (the message names the attribute and both
            values); they share samples (an augmented view counts as its
            image); or the validation cache holds augmented views.
    """
    for role, part in (("train", train), ("validation", validation)):
        if part.metadata.split != role:
            raise ValueError(
                f"Expected --{'training' if role == 'train' else 'validation'}_file to be a "
                f"{role} split cache. Received: {part.path}, a {part.metadata.split} split. "
                "Pass the *_train.h5 file as --training_file and the *_validation.h5 file as "
                "--validation_file."
            )
    pairs = [(name, getattr(train.metadata, name), getattr(validation.metadata, name))
             for name in ("dataset", *_PAIRED_ATTRIBUTES)]
    pairs.append(("class_names", list(train.class_names), list(validation.class_names)))
    pairs.append(("feature shape", train.feature_shape, validation.feature_shape))
    for name, mine, theirs in pairs:
        if mine != theirs:
            raise ValueError(
                f"The training and validation caches differ in {name}: {mine!r} in {train.path}, "
                f"{theirs!r} in {validation.path}. Expected both splits extracted with the same "
                "extract_features settings; extract them again with one command."
            )
    if validation.metadata.augment_copies or validation.views.any():
        raise ValueError(
            f"Expected a validation cache of the images themselves. Received: {validation.path} "
            "holds augmented views, which would make validation accuracy meaningless. Extract the "
            "validation split without --augment_copies."
        )
    shared = set(train.filenames) & set(validation.filenames)
    if shared:
        raise ValueError(
            f"{len(shared)} samples are in both {train.path} and {validation.path} (e.g. "
            f"{sorted(shared)[0]}): validation data would leak into training. Expected disjoint "
            "splits; extract both with one extract_features command and the same --seed."
        )


def default_output_dir(training_file, head):
    """Returns `runs/<network>_<dataset>[_<N>]_<head>` for a training cache path."""
    stem = os.path.basename(training_file)
    for suffix in ("_bottleneck_features_train.h5", ".h5"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return os.path.join("runs", f"{stem}_{head}")


def _write_json(path, payload):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")


def _datasets(train, validation, batch_size, seed):
    """The `tf.data` pipelines `fit` reads: features stay in memory as tensors.

    An endless, reshuffled training stream with `steps_per_epoch` and a cached
    validation set let Keras keep one iterator of each for the whole fit;
    with NumPy arrays it builds both again every epoch, which for a small head
    takes several times longer than the training itself.

    Returns:
        `(train_data, steps_per_epoch, validation_data)`.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    count = len(train.labels)
    train_data = (tf.data.Dataset.from_tensor_slices((train.features, train.labels))
                  .shuffle(count, seed=seed, reshuffle_each_iteration=True)
                  .batch(batch_size).repeat().prefetch(tf.data.AUTOTUNE))
    validation_data = (tf.data.Dataset.from_tensor_slices((validation.features, validation.labels))
                       .batch(batch_size).cache())
    return train_data, -(-count // batch_size), validation_data


def _fit_keras(train, validation, settings, output_dir, verbose):
    import keras  # pylint: disable=g-import-not-at-top

    keras.utils.set_random_seed(settings.seed)
    num_classes = len(train.class_names)
    model = heads.build_keras_head(settings.head, train.feature_shape, num_classes,
                                   settings.hidden_units, settings.dropout, settings.l2)
    early_stopping, batch_size = settings.early_stopping, settings.batch_size
    metrics = ["accuracy"]
    if num_classes >= 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=metrics,
    )
    callbacks = [keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"))]
    if early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=early_stopping, restore_best_weights=True, verbose=1
        ))
    train_data, steps, validation_data = _datasets(train, validation, batch_size, settings.seed)
    history = model.fit(
        train_data, steps_per_epoch=steps, validation_data=validation_data,
        # The training stream shuffles itself (seeded); fit's own shuffle does not apply.
        epochs=settings.epochs, callbacks=callbacks, verbose=verbose, shuffle=False,
    )
    model.save(os.path.join(output_dir, "head.keras"))
    probabilities = model.predict(validation.features, batch_size=batch_size, verbose=0)
    train_probabilities = model.predict(train.features, batch_size=batch_size, verbose=0)
    return probabilities, train_probabilities, len(history.epoch), "head.keras"


def _fit_logreg(train, validation, l2, seed, output_dir):
    import joblib  # pylint: disable=g-import-not-at-top

    model = heads.build_logreg(l2=l2, seed=seed)
    flat_train = train.features.reshape(len(train.features), -1)
    model.fit(flat_train, train.labels)
    # A class absent from the training split would shrink predict_proba's columns.
    probabilities = np.zeros((len(validation.labels), len(train.class_names)))
    probabilities[:, model.classes_] = model.predict_proba(
        validation.features.reshape(len(validation.features), -1))
    train_probabilities = np.zeros((len(train.labels), len(train.class_names)))
    train_probabilities[:, model.classes_] = model.predict_proba(flat_train)
    joblib.dump(model, os.path.join(output_dir, "head.joblib"))
    iterations = int(np.max(model[-1].n_iter_))
    return probabilities, train_probabilities, iterations, "head.joblib"


def _write_reports(folder, validation, predictions, head):
    """Curves, confusion matrix, per-class report and misclassified files of one job."""
    from classifiers import reports  # pylint: disable=g-import-not-at-top

    names = validation.class_names
    reports.plot_history(os.path.join(folder, "history.csv"), os.path.join(folder, "history.png"),
                         title=f"{validation.metadata.network} {validation.metadata.dataset} {head}")
    reports.plot_confusion_matrix(validation.labels, predictions, names,
                                  os.path.join(folder, "confusion_matrix.png"))
    reports.write_class_report(validation.labels, predictions, names,
                               os.path.join(folder, "class_report.csv"))
    reports.write_misclassified(validation.filenames, validation.labels, predictions, names,
                                os.path.join(folder, "misclassified.csv"))


def _write_logreg_history(path, train_metrics, val_metrics):
    row = {"epoch": 0, **{k.removeprefix("train_"): v for k, v in train_metrics.items()},
           **val_metrics}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)


@dataclasses.dataclass(frozen=True)
class HeadSettings:
    """How to train a head (see `train_head` for each field)."""

    head: str = "softmax"
    epochs: int = 50
    batch_size: int = 256
    learning_rate: float = 1e-3
    hidden_units: int = 256
    dropout: float = 0.5
    l2: float = 0.0
    early_stopping: int = 0
    seed: int = 0

    def check(self):
        """Raises `ValueError` naming the first setting out of range."""
        heads.check_head(self.head)
        for name, low in (("epochs", 1), ("batch_size", 1), ("hidden_units", 1),
                          ("early_stopping", 0)):
            value = getattr(self, name)
            if value < low:
                raise ValueError(f"Expected {name} >= {low}. Received: {name}={value}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Expected dropout in [0, 1). Received: dropout={self.dropout}.")
        if self.learning_rate <= 0 or self.l2 < 0:
            raise ValueError(
                f"Expected learning_rate > 0 and l2 >= 0. Received: learning_rate="
                f"{self.learning_rate}, l2={self.l2}."
            )
        return self


def train_head(
    training_file,
    validation_file,
    head="softmax",
    epochs=50,
    batch_size=256,
    learning_rate=1e-3,
    hidden_units=256,
    dropout=0.5,
    l2=0.0,
    early_stopping=0,
    seed=0,
    output_dir=None,
):
    """Trains a head on cached features and writes it with its history and metrics.

    Writes to `output_dir`, all at once (a failure leaves an older folder as
    it was): the head (`head.keras`, or `head.joblib` for `logreg`),
    `history.csv` (one row per epoch), `metrics.json` (`val_accuracy`,
    `val_loss`, `val_top5_accuracy` with 5+ classes, and the settings) and
    `head_config.json` (the caches' network, weights, layer, pooling, input
    size, preprocessing and class names).

    Args:
        training_file: a training split cache.
        validation_file: a validation split cache of the same extraction.
        head: one of `classifiers.heads.HEADS`.
        epochs: passes over the training features (Keras heads).
        batch_size: samples per gradient step (Keras heads).
        learning_rate: Adam's learning rate (Keras heads).
        hidden_units: width of the `mlp` hidden layer.
        dropout: dropout rate of the `mlp` head.
        l2: L2 penalty (Keras kernels; `C = 1 / l2` for `logreg`).
        early_stopping: stop after this many epochs without a better
            `val_loss` and keep the best weights; 0 to train every epoch.
        seed: seed of weight initialization and shuffling.
        output_dir: where to write; defaults to `runs/<cache stem>_<head>`.

    Returns:
        The metrics written to `metrics.json`, as a dict, plus `output_dir`.

    Raises:
        ValueError: a bad argument, an invalid cache, or an incompatible pair.
    """
    settings = HeadSettings(head, epochs, batch_size, learning_rate, hidden_units, dropout, l2,
                            early_stopping, seed).check()
    train = cache.read_cache(training_file)
    validation = cache.read_cache(validation_file)
    return train_on_caches(train, validation, settings,
                           output_dir or default_output_dir(training_file, head))


def train_on_caches(train, validation, settings, output_dir, verbose=2):
    """Trains one head on two loaded caches; see `train_head`.

    Args:
        train: the training `pipeline.cache.Cache`.
        validation: the validation `pipeline.cache.Cache`.
        settings: a checked `HeadSettings`.
        output_dir: the folder to write, all at once.
        verbose: Keras' verbosity (2: one line per epoch; 0: silent).

    Returns:
        The metrics written to `metrics.json`, plus `output_dir`.
    """
    check_pair(train, validation)
    with files.atomic_directory(output_dir) as staging:
        results = _train_into(staging, train, validation, settings, verbose)
    return {**results, "output_dir": output_dir}


def _train_into(folder, train, validation, settings, verbose):
    """Trains the head and writes every output file to `folder`; returns the metrics."""
    head = settings.head
    if head != "logreg":
        import keras  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import  # Start-up, not training.
    # CPU time so far: interpreter start, imports, reading the caches (and earlier jobs of a batch).
    startup_cpu = time.process_time()
    started = time.perf_counter()
    if head == "logreg":
        probabilities, train_probabilities, steps, head_file = _fit_logreg(
            train, validation, settings.l2, settings.seed, folder)
    else:
        probabilities, train_probabilities, steps, head_file = _fit_keras(
            train, validation, settings, folder, verbose)
    fit_seconds = time.perf_counter() - started
    fit_cpu = time.process_time() - startup_cpu
    val_metrics = evaluation.evaluate(probabilities, validation.labels)
    train_metrics = evaluation.evaluate(train_probabilities, train.labels, prefix="train_")
    if head == "logreg":
        _write_logreg_history(os.path.join(folder, "history.csv"), train_metrics, val_metrics)
    _write_reports(folder, validation, probabilities.argmax(axis=1), head)
    results = {
        **val_metrics,
        **train_metrics,
        "head": head,
        "head_file": head_file,
        # Keras heads count epochs; L-BFGS counts solver iterations, which are not epochs.
        ("solver_iterations" if head == "logreg" else "epochs_run"): steps,
        "fit_seconds": round(fit_seconds, 3),
        "fit_cpu_seconds": round(fit_cpu, 3),
        "startup_cpu_seconds": round(startup_cpu, 3),
        "num_classes": len(train.class_names),
        "num_train": len(train.labels),
        "num_validation": len(validation.labels),
        "feature_shape": list(train.feature_shape),
        "training_file": os.path.abspath(train.path),
        "validation_file": os.path.abspath(validation.path),
        "settings": dataclasses.asdict(settings),
    }
    _write_json(os.path.join(folder, "metrics.json"), results)
    config = {key: getattr(train.metadata, key) for key in _PAIRED_ATTRIBUTES}
    config.update(input_size=list(train.metadata.input_size), class_names=list(train.class_names),
                  seed=train.metadata.seed, dataset=train.metadata.dataset,
                  per_class=train.metadata.per_class,
                  dataset_digests={"train": train.metadata.dataset_digest,
                                   "validation": validation.metadata.dataset_digest},
                  head=head, head_file=head_file, training_fingerprint=train.fingerprint)
    _write_json(os.path.join(folder, "head_config.json"), config)
    return results


def format_summary(results):
    """Returns a one-paragraph, human-readable summary of `train_head`'s results."""
    top5 = results.get("val_top5_accuracy")
    top5_text = f"  val_top5_accuracy={top5:.4f}" if top5 is not None else ""
    if "epochs_run" in results:
        steps_text = f"epochs_run={results['epochs_run']}"
    else:
        steps_text = f"solver_iterations={results['solver_iterations']}"
    return (
        f"head={results['head']}  classes={results['num_classes']}  "
        f"train={results['num_train']}  validation={results['num_validation']}  "
        f"features={tuple(results['feature_shape'])}\n"
        f"val_accuracy={results['val_accuracy']:.4f}{top5_text}  val_loss={results['val_loss']:.4f}  "
        f"train_accuracy={results['train_accuracy']:.4f}\n"
        f"{steps_text}  fit={results['fit_seconds']:.2f} s ({results['fit_cpu_seconds']:.2f} s CPU; "
        f"start-up before it {results['startup_cpu_seconds']:.2f} s CPU)  "
        f"output_dir={results['output_dir']}"
    )
