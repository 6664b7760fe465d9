"""Stage two: train a head on a pair of cached splits and save what it learned."""

import csv
import dataclasses
import functools
import math
import os
import time

import numpy as np

from bottleneck_cache.classifiers import evaluation
from bottleneck_cache.classifiers import head_format
from bottleneck_cache.classifiers import heads
from bottleneck_cache.classifiers import trainer
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import checks
from bottleneck_cache.pipeline import files



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
             for name in ("dataset", *cache.PAIRED_ATTRIBUTES)]
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
    return os.path.join("runs", f"{cache.run_name(training_file)}_{head}")


def _write_history(path, rows):
    """Writes one row per epoch as Keras' CSVLogger did: `epoch`, then the other columns sorted."""
    columns = ["epoch", *sorted(key for key in rows[0] if key != "epoch")]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@dataclasses.dataclass(frozen=True)
class Standardized:
    """A pair's features, standardized once for every head trained on them.

    Attributes:
        mean, scale: `(D,)` float32, from the training features.
        x_train, x_val: `(n, D)` and `(m, D)` float32 standardized, flattened features.
    """

    mean: np.ndarray
    scale: np.ndarray
    x_train: np.ndarray
    x_val: np.ndarray


def standardize_pair(train, validation):
    """Standardizes both caches' features with the training features' mean and scale."""
    mean, scale = trainer.standardization(train.features)
    return Standardized(mean, scale, trainer.standardize(train.features, mean, scale),
                        trainer.standardize(validation.features, mean, scale))


@dataclasses.dataclass(frozen=True)
class FittedHead:
    """A trained head, before it is written (see `fit_heads`).

    Attributes:
        saved: the `head_format.SavedHead`.
        history: per-epoch rows (softmax, mlp), or None (logreg).
        steps: epochs run, or L-BFGS iterations (logreg).
        fit_seconds: wall seconds of the training it was part of.
        fit_cpu_seconds: CPU seconds of that training.
        startup_cpu_seconds: CPU seconds of the process before it.
        trained_together: heads in that training (1, or the size of a stack).
        chosen_l2: the penalty `--l2=auto` chose (logreg), else None.
    """

    saved: head_format.SavedHead
    history: tuple | None
    steps: int
    fit_seconds: float
    fit_cpu_seconds: float
    startup_cpu_seconds: float
    trained_together: int
    chosen_l2: float | None = None


def effective_settings(settings):
    """`settings` with the fields its head ignores set to their defaults.

    Two jobs with equal effective settings train the same head (e.g. logreg jobs of a
    learning-rate sweep, or softmax jobs of a hidden-units sweep), so a batch trains it once.
    """
    default = HeadSettings()
    ignored = {"hidden_units": default.hidden_units, "dropout": default.dropout}
    if settings.head == "logreg":
        ignored.update(learning_rate=default.learning_rate, epochs=default.epochs,
                       batch_size=default.batch_size, early_stopping=default.early_stopping)
    elif settings.head == "mlp":
        ignored = {}
    return dataclasses.replace(settings, **ignored)


def stack_key(settings):
    """Heads whose settings share this key train together as one stack; None: alone (logreg)."""
    if settings.head == "logreg":
        return None
    return (settings.head, settings.hidden_units if settings.head == "mlp" else 0, settings.epochs,
            settings.batch_size, settings.early_stopping, settings.seed)


def fit_heads(train, validation, settings_list, standardized=None, log=None):
    """Trains heads on a pair of caches: one logreg, or softmax/mlp heads of one `stack_key`.

    Args:
        train: the training `pipeline.cache.Cache`.
        validation: the validation `pipeline.cache.Cache`.
        settings_list: checked `HeadSettings`, all of one `stack_key` (one, for logreg).
        standardized: `standardize_pair(train, validation)`, computed here if None.
        log: if given, called with one line per epoch.

    Returns:
        One `FittedHead` per settings, in order.
    """
    import threadpoolctl  # pylint: disable=g-import-not-at-top

    standardized = standardized or standardize_pair(train, validation)
    first, dim = settings_list[0], standardized.x_train.shape[1]
    num_classes = len(train.class_names)
    controller = None if first.head == "logreg" else blas_controller()
    startup_cpu, started = time.process_time(), time.perf_counter()
    chosen = None
    if first.head == "logreg":
        # Load scikit-learn (and SciPy's own OpenBLAS) first: threadpool_limits only limits the
        # libraries already loaded, and two threads made --l2=auto 4x slower on a busy 2-vCPU machine.
        # pylint: disable-next=g-import-not-at-top,unused-import
        from sklearn import linear_model, model_selection  # noqa: F401

        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            kernels, biases, steps, chosen = _fit_logreg(standardized.x_train, train.labels, num_classes,
                                                         first.l2, first.seed)
        layers = [(kernels, biases, None, steps)]
    else:
        spec = trainer.StackSpec(
            first.head, num_classes, first.hidden_units, tuple(s.learning_rate for s in settings_list),
            tuple(float(s.l2) for s in settings_list), tuple(s.dropout for s in settings_list),
            first.epochs, first.batch_size, first.early_stopping, first.seed)
        units = first.hidden_units if first.head == "mlp" else num_classes
        threads = trainer.blas_threads(first.batch_size, dim, units * spec.size)
        with controller.limit(limits=threads, user_api="blas"):
            trained = trainer.train_stack(standardized.x_train, train.labels, standardized.x_val,
                                          validation.labels, spec, log)
        layers = [(t.kernels, t.biases, t.history, t.epochs_run) for t in trained]
    fit_seconds, fit_cpu = time.perf_counter() - started, time.process_time() - startup_cpu
    fitted = []
    for settings, (kernels, biases, history, steps) in zip(settings_list, layers):
        activations = ("relu",) * (len(kernels) - 1) + ("softmax",)
        saved = head_format.SavedHead(
            settings.head, tuple(train.class_names), tuple(train.feature_shape), standardized.mean,
            standardized.scale, tuple(kernels), tuple(biases), activations, dataclasses.asdict(settings))
        fitted.append(FittedHead(saved, history, steps, fit_seconds, fit_cpu, startup_cpu,
                                 len(settings_list), chosen))
    return fitted


@functools.lru_cache(maxsize=1)
def blas_controller():
    """A `threadpoolctl.ThreadpoolController` of the BLAS libraries loaded now (NumPy's), made once.

    Making one scans the process' libraries (3-10 ms here); softmax and mlp heads use NumPy's BLAS
    only, so one made before their first training serves every later one. logreg makes its own,
    after loading scikit-learn and SciPy's own BLAS.
    """
    import threadpoolctl  # pylint: disable=g-import-not-at-top

    return threadpoolctl.ThreadpoolController()


# Penalties `--l2=auto` chooses among (scikit-learn's C = 1 / l2), and its folds at most.
AUTO_L2 = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
AUTO_FOLDS = 5


def _logistic_regression(l2, seed, warm_start=False):
    from sklearn import linear_model  # pylint: disable=g-import-not-at-top

    return linear_model.LogisticRegression(C=1.0 / l2 if l2 else 1.0, max_iter=1000, random_state=seed,
                                           warm_start=warm_start)


def _fit_logreg(x, labels, num_classes, l2, seed):
    """Multinomial logistic regression (L-BFGS) on standardized features.

    With `l2="auto"`, the penalty is `choose_l2`'s, from the training split only.

    Returns:
        `([kernel], [bias], solver iterations, chosen l2 or None)`; a class absent
        from the training split gets a bias of -1e9 (probability 0), and a binary
        problem the two logits `(0, z)`.
    """
    chosen = choose_l2(x, labels, seed) if l2 == "auto" else None
    model = _logistic_regression(chosen if chosen is not None else l2, seed).fit(x, labels)
    coef = np.asarray(model.coef_, np.float64)
    intercept = np.asarray(model.intercept_, np.float64)
    if coef.shape[0] == 1:  # Binary: p(class 1) = sigmoid(z) = softmax((0, z))[1].
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    kernel = np.zeros((x.shape[1], num_classes), np.float32)
    bias = np.full((num_classes,), -1e9, np.float32)
    classes = np.asarray(model.classes_, np.int64)
    kernel[:, classes] = coef.T
    bias[classes] = intercept
    return [kernel], [bias], int(np.max(model.n_iter_)), chosen


def choose_l2(x, labels, seed):
    """The penalty of `AUTO_L2` with the best cross-validated accuracy on the training split.

    Stratified, shuffled k-fold (k = `AUTO_FOLDS`, fewer if a class has fewer
    samples); in each fold the penalties are fitted from the strongest down, each
    starting from the previous solution. Accuracy (scikit-learn's
    `LogisticRegressionCV` default) decides, the log loss breaks ties; on
    MobileNetV2 CIFAR-10 features the log loss alone chose a penalty 0.8 points
    less accurate on validation. The validation split is never used.

    Args:
        x: `(n, D)` standardized training features.
        labels: `(n,)` training labels.
        seed: seed of the folds.

    Returns:
        The chosen l2, a float.

    Raises:
        ValueError: a class with fewer than 2 training samples.
    """
    from sklearn import model_selection  # pylint: disable=g-import-not-at-top

    present = np.unique(labels)
    smallest = int(np.min(np.bincount(labels)[present]))
    if smallest < 2:
        raise ValueError(
            f"Expected at least 2 training samples of every class for --l2=auto (cross-validation). "
            f"Received: a class with {smallest}. Pass a number as --l2, or more training samples.")
    folds = model_selection.StratifiedKFold(min(AUTO_FOLDS, smallest), shuffle=True, random_state=seed)
    penalties = sorted(AUTO_L2, reverse=True)
    losses, hits = np.zeros(len(penalties)), np.zeros(len(penalties))
    for fit_rows, test_rows in folds.split(x, labels):
        model = _logistic_regression(penalties[0], seed, warm_start=True)
        for index, l2 in enumerate(penalties):
            model.set_params(C=1.0 / l2).fit(x[fit_rows], labels[fit_rows])
            probabilities = np.zeros((len(test_rows), int(present.max()) + 1))
            probabilities[:, model.classes_] = model.predict_proba(x[test_rows])
            true = probabilities[np.arange(len(test_rows)), labels[test_rows]]
            losses[index] += -np.mean(np.log(np.clip(true, 1e-15, 1.0)))
            hits[index] += np.sum(probabilities.argmax(axis=1) == labels[test_rows])
    return float(penalties[np.lexsort((losses, -hits))[0]])


def _write_reports(folder, validation, predictions, head, plots):
    """Per-class report and misclassified files of one job; with `plots`, curves and confusion matrix."""
    from bottleneck_cache.classifiers import reports  # pylint: disable=g-import-not-at-top

    names = validation.class_names
    reports.write_class_report(validation.labels, predictions, names,
                               os.path.join(folder, "class_report.csv"))
    reports.write_misclassified(validation.filenames, validation.labels, predictions, names,
                                os.path.join(folder, "misclassified.csv"))
    if plots:
        reports.plot_history(os.path.join(folder, "history.csv"), os.path.join(folder, "history.png"),
                             title=f"{validation.metadata.network} {validation.metadata.dataset} {head}")
        reports.plot_confusion_matrix(validation.labels, predictions, names,
                                      os.path.join(folder, "confusion_matrix.png"))


@dataclasses.dataclass(frozen=True)
class HeadSettings:
    """How to train a head (see `train_head` for each field)."""

    head: str = "softmax"
    epochs: int = 50
    batch_size: int = 256
    learning_rate: float = 1e-3
    hidden_units: int = 256
    dropout: float = 0.5
    l2: float | str = 0.0  # A number, or "auto" (logreg only).
    early_stopping: int = 0
    seed: int = 0

    def check(self):
        """Raises `ValueError` naming the first setting out of range."""
        heads.check_head(self.head)
        for name, low in (("epochs", 1), ("batch_size", 1), ("hidden_units", 1),
                          ("early_stopping", 0)):
            checks.check_scalar(getattr(self, name), name, low)
        checks.check_scalar(self.dropout, "dropout", 0, 1, include_max=False)
        checks.check_scalar(self.learning_rate, "learning_rate", 0, include_min=False, finite=True,
                            fix="Pass e.g. --learning_rate=0.001.")
        if self.l2 == "auto":
            if self.head != "logreg":
                raise ValueError(
                    f"Expected l2='auto' only with head logreg (cross-validated penalty). Received: "
                    f"head={self.head!r}, l2='auto'. Pass a number as --l2 for {self.head} heads."
                )
        elif isinstance(self.l2, str) or not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(
                f"Expected l2 to be a finite number >= 0, or 'auto' with head logreg. Received: "
                f"l2={self.l2!r}."
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
    plots=False,
):
    """Trains a head on cached features and writes it with its history and metrics.

    Writes to `output_dir`, all at once (a failure leaves an older folder as
    it was): the head (`head.npz`, see `classifiers.head_format`),
    `history.csv` (one row per epoch), `metrics.json` (`val_accuracy`,
    `val_loss`, `val_top5_accuracy` with 5+ classes, and the settings),
    `head_config.json` (the caches' network, weights, layer, pooling, input
    size, preprocessing and class names), `class_report.csv` and
    `misclassified.csv`; with `plots`, also `history.png` and
    `confusion_matrix.png`.

    Args:
        training_file: a training split cache.
        validation_file: a validation split cache of the same extraction.
        head: one of `classifiers.heads.HEADS`.
        epochs: passes over the training features (softmax, mlp).
        batch_size: samples per gradient step (softmax, mlp).
        learning_rate: Adam's learning rate (softmax, mlp).
        hidden_units: width of the `mlp` hidden layer.
        dropout: dropout rate of the `mlp` head.
        l2: L2 penalty (`l2 * sum(kernel ** 2)` added to the loss; `C = 1 / l2`
            for `logreg`), or `"auto"` (logreg: chosen by cross-validation on
            the training split).
        early_stopping: stop after this many epochs without a better
            `val_loss` and keep the best weights; 0 to train every epoch.
        seed: seed of weight initialization, shuffling and dropout.
        output_dir: where to write; defaults to `runs/<cache stem>_<head>`.
        plots: also draw `history.png` and `confusion_matrix.png`.

    Returns:
        The metrics written to `metrics.json`, as a dict, plus `output_dir`.

    Raises:
        ValueError: a bad argument, an invalid cache, or an incompatible pair.
    """
    settings = HeadSettings(head, epochs, batch_size, learning_rate, hidden_units, dropout, l2,
                            early_stopping, seed).check()
    output_dir = output_dir or default_output_dir(training_file, head)
    files.check_output_dir(output_dir, "--output_dir", inputs=(training_file, validation_file))
    train = cache.read_cache(training_file)
    validation = cache.read_cache(validation_file)
    return train_on_caches(train, validation, settings, output_dir, plots=plots)


def train_on_caches(train, validation, settings, output_dir, verbose=2, plots=False):
    """Trains one head on two loaded caches; see `train_head`.

    Args:
        train: the training `pipeline.cache.Cache`.
        validation: the validation `pipeline.cache.Cache`.
        settings: a checked `HeadSettings`.
        output_dir: the folder to write, all at once.
        verbose: 2 (or 1): one line per epoch; 0: silent.
        plots: also draw `history.png` and `confusion_matrix.png`.

    Returns:
        The metrics written to `metrics.json`, plus `output_dir`.
    """
    check_pair(train, validation)
    files.check_output_dir(output_dir, "--output_dir", inputs=(train.path, validation.path))
    fitted = fit_heads(train, validation, [settings], log=print if verbose else None)[0]
    return write_fitted(train, validation, settings, fitted, output_dir, plots)


def write_fitted(train, validation, settings, fitted, output_dir, plots=False):
    """Writes a `FittedHead`'s folder all at once; returns its metrics plus `output_dir`."""
    with files.atomic_directory(output_dir, flag="--output_dir", inputs=(train.path, validation.path),
                                command="feature_extraction") as staging:
        results = write_head_folder(staging, train, validation, settings, fitted, plots)
    return {**results, "output_dir": output_dir}


def write_head_folder(folder, train, validation, settings, fitted, plots=False):
    """Writes a fitted head and its reports to `folder` (see `train_head`); returns the metrics."""
    head = settings.head
    head_file = head_format.FILENAME
    head_format.save(os.path.join(folder, head_file), fitted.saved)
    probabilities = fitted.saved.probabilities(validation.features)
    train_probabilities = fitted.saved.probabilities(train.features)
    val_metrics = evaluation.evaluate(probabilities, validation.labels)
    train_metrics = evaluation.evaluate(train_probabilities, train.labels, prefix="train_")
    history = fitted.history or [{"epoch": 0, **{k.removeprefix("train_"): v
                                                 for k, v in train_metrics.items()}, **val_metrics}]
    _write_history(os.path.join(folder, "history.csv"), list(history))
    _write_reports(folder, validation, probabilities.argmax(axis=1), head, plots)
    results = {
        **val_metrics,
        **train_metrics,
        "head": head,
        "head_file": head_file,
        # softmax and mlp count epochs; L-BFGS counts solver iterations, which are not epochs.
        ("solver_iterations" if head == "logreg" else "epochs_run"): fitted.steps,
        "fit_seconds": round(fitted.fit_seconds, 3),
        "fit_cpu_seconds": round(fitted.fit_cpu_seconds, 3),
        "startup_cpu_seconds": round(fitted.startup_cpu_seconds, 3),
        "heads_trained_together": fitted.trained_together,
        "num_classes": len(train.class_names),
        "num_train": len(train.labels),
        "num_validation": len(validation.labels),
        "feature_shape": list(train.feature_shape),
        "training_file": os.path.abspath(train.path),
        "validation_file": os.path.abspath(validation.path),
        "settings": dataclasses.asdict(settings),
    }
    if fitted.chosen_l2 is not None:
        results["chosen_l2"] = fitted.chosen_l2
    files.write_json(os.path.join(folder, "metrics.json"), results)
    config = {key: getattr(train.metadata, key) for key in cache.PAIRED_ATTRIBUTES}
    config.update(input_size=list(train.metadata.input_size), class_names=list(train.class_names),
                  seed=train.metadata.seed, dataset=train.metadata.dataset,
                  per_class=train.metadata.per_class,
                  dataset_digests={"train": train.metadata.dataset_digest,
                                   "validation": validation.metadata.dataset_digest},
                  head=head, head_file=head_file, training_fingerprint=train.fingerprint)
    files.write_json(os.path.join(folder, "head_config.json"), config)
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
