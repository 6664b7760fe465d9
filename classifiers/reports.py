"""Reports of a trained head: training curves, confusion matrix, results chart and per-class CSVs.

Every plot is drawn on a bare `matplotlib.figure.Figure` with the Agg canvas,
so no global backend is chosen and no pyplot state is created (nothing to
close, nothing leaks between calls). matplotlib is imported inside the
functions, and the per-class numbers are computed in NumPy (the same as
scikit-learn's, which takes about a second to import), so importing this
module and writing the CSV reports cost milliseconds.
"""

import csv
import math

import numpy as np

# Resolution of every PNG.
_DPI = 100
# Counts are written in the confusion matrix's cells up to this many classes.
_MAX_CLASSES_WITH_COUNTS = 20
# Inches per class of the confusion matrix, and its smallest and largest side.
_INCHES_PER_CLASS = 0.32
_MIN_MATRIX_INCHES = 4.0
_MAX_MATRIX_INCHES = 40.0
# Header of the per-class report and of the misclassified-samples CSV.
CLASS_REPORT_FIELDS = ("class", "precision", "recall", "f1", "support")
MISCLASSIFIED_FIELDS = ("filename", "true", "predicted")
# Names of the two average rows of the per-class report (as in sklearn's classification_report).
MACRO_AVG = "macro avg"
WEIGHTED_AVG = "weighted avg"
# Columns of a Keras CSVLogger history drawn by `plot_history`, per panel: (column, label).
_HISTORY_PANELS = (
    ("loss", (("loss", "train"), ("val_loss", "validation"))),
    ("accuracy", (("accuracy", "train"), ("val_accuracy", "validation"),
                  ("top5_accuracy", "train top-5"), ("val_top5_accuracy", "validation top-5"))),
)


def _new_figure(width, height):
    """Returns a `Figure` of `width` x `height` inches on an Agg canvas (no pyplot, no backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    """Writes `figure` as a PNG to `path` (whatever its extension) and releases its artists."""
    try:
        figure.savefig(path, format="png", dpi=_DPI)
    finally:
        figure.clear()


def _read_history(history_csv):
    """Reads a CSVLogger file.

    Args:
        history_csv: path of a CSV with a header row and one row per epoch.

    Returns:
        A dict from column name to a `(num_epochs,)` float array (NaN for an
        empty or non-numeric cell).

    Raises:
        ValueError: the file has no data row.
    """
    with open(history_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(
            f"Expected at least one epoch in the history file {history_csv}. Received: no data rows. "
            "Pass the history.csv of a head that trained for at least one epoch."
        )
    return {name: np.array([_to_float(row.get(name)) for row in rows]) for name in rows[0]}


def _to_float(value):
    """Returns `value` as a float, or NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_history(history_csv, path, title=""):
    """Plots training and validation curves per epoch from a Keras CSVLogger file.

    One panel for the loss and one for the accuracy (with the top-5 accuracy,
    dashed, when the file has it); a panel whose columns are all absent is
    left out, and other columns (`learning_rate`, ...) are ignored. With a
    single row (the scikit-learn `logreg` head writes one, epoch 0) the values
    are drawn as markers, since there is no curve.

    Args:
        history_csv: CSV with columns `epoch`, `accuracy`, `loss`,
            `val_accuracy`, `val_loss` and maybe `top5_accuracy`,
            `val_top5_accuracy`, `learning_rate`; one row per epoch.
        path: where to write the PNG.
        title: figure title.

    Raises:
        ValueError: the file has no data row, or none of the loss and accuracy
            columns.
    """
    history = _read_history(history_csv)
    num_epochs = len(next(iter(history.values())))
    epochs = history.get("epoch")
    if epochs is None or np.isnan(epochs).any():
        epochs = np.arange(num_epochs, dtype=float)
    panels = _history_panels(history, history_csv)
    figure = _new_figure(5.0 * len(panels), 4.0)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, columns) in zip(axes, panels):
        _draw_history_panel(ax, epochs, history, name, columns)
    if title:
        figure.suptitle(title)
    _save(figure, path)


def _history_panels(history, history_csv):
    """Returns `[(panel name, [(column, label), ...]), ...]` for the columns `history` has."""
    panels = [(name, [(column, label) for column, label in columns if column in history])
              for name, columns in _HISTORY_PANELS]
    panels = [(name, columns) for name, columns in panels if columns]
    if not panels:
        raise ValueError(
            f"Expected loss or accuracy columns in the history file {history_csv}. Received columns: "
            f"{sorted(history)}. Pass a history.csv written by feature_extraction (Keras' CSVLogger)."
        )
    return panels


def _draw_history_panel(ax, epochs, history, name, columns):
    """Draws the `columns` of `history` against `epochs` on `ax`: lines, or markers for one epoch."""
    from matplotlib.ticker import MaxNLocator  # pylint: disable=g-import-not-at-top

    single = len(epochs) == 1
    for column, label in columns:
        style = {"linestyle": "--" if "top5" in column else "-",
                 "color": "tab:orange" if column.startswith("val_") else "tab:blue"}
        if single:
            style.update(linestyle="none", marker="s" if "top5" in column else "o", markersize=8)
        ax.plot(epochs, history[column], label=label, **style)
        if single:
            ax.annotate(f"{history[column][0]:.4f}", (epochs[0], history[column][0]),
                        xytext=(8, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    ax.set_title(name)
    if single:
        ax.set_xticks(epochs)
        ax.set_xlim(epochs[0] - 1.0, epochs[0] + 1.0)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()


def _check_predictions(labels, predictions, class_names):
    """Validates the inputs of the per-sample reports.

    Args:
        labels: `(num_samples,)` true class indices.
        predictions: `(num_samples,)` predicted class indices.
        class_names: `(num_classes,)` names; the indices index into it.

    Returns:
        `(labels, predictions, class_names)` as two int arrays and a list of str.

    Raises:
        ValueError: no class names, no samples, arrays that are not 1-D or
            differ in length, or an index outside `[0, num_classes)`.
    """
    class_names = [_to_text(name) for name in class_names]
    if not class_names:
        raise ValueError("Expected at least one class name. Received: class_names=[]. Pass the names "
                         "that the labels index.")
    arrays = []
    for name, values in (("labels", labels), ("predictions", predictions)):
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValueError(
                f"Expected {name} of shape (num_samples,). Received: shape {values.shape}. Pass one "
                "class index per sample.")
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(
                f"Expected integer class indices in {name}. Received: dtype {values.dtype}. Pass "
                "indices into class_names (e.g. the argmax of the scores).")
        values = values.astype(np.int64)
        outside = (values < 0) | (values >= len(class_names))
        if outside.any():
            raise ValueError(
                f"Expected {name} in [0, {len(class_names)}) ({len(class_names)} class names). "
                f"Received: {values[outside][0]} at index {int(np.flatnonzero(outside)[0])}. Pass the "
                "class names the indices were made with."
            )
        arrays.append(values)
    if len(arrays[0]) != len(arrays[1]):
        raise ValueError(
            f"Expected as many predictions as labels. Received: {len(arrays[0])} labels, "
            f"{len(arrays[1])} predictions. Pass one prediction per label."
        )
    if not len(arrays[0]):
        raise ValueError("Expected at least one sample. Received: empty labels and predictions. Pass "
                         "the labels and predictions of at least one image.")
    return arrays[0], arrays[1], class_names


def _to_text(value):
    """Returns `value` as str (UTF-8 bytes, as h5py may return them, are decoded)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _matrix_side(num_classes):
    """Returns the confusion matrix figure's side in inches, growing with the class count."""
    return float(np.clip(2.5 + _INCHES_PER_CLASS * num_classes, _MIN_MATRIX_INCHES,
                         _MAX_MATRIX_INCHES))


def _row_normalize(matrix):
    """Returns each row of `matrix` divided by its sum (rows that sum to 0 stay 0)."""
    totals = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def plot_confusion_matrix(labels, predictions, class_names, path, title=""):
    """Plots a confusion matrix with row-normalized colours.

    Each cell's colour is its fraction of the true class's samples (a row of
    a class without samples stays blank); with at most 20 classes the counts
    are written in the cells. The figure grows with the class count, so 43
    classes (GTSRB) stay legible.

    Args:
        labels: `(num_samples,)` true class indices.
        predictions: `(num_samples,)` predicted class indices.
        class_names: `(num_classes,)` names; rows are true, columns predicted
            classes, in this order.
        path: where to write the PNG.
        title: axes title.

    Raises:
        ValueError: see `_check_predictions`.
    """
    labels, predictions, class_names = _check_predictions(labels, predictions, class_names)
    num_classes = len(class_names)
    counts = confusion_counts(labels, predictions, num_classes)
    fractions = _row_normalize(counts)
    side = _matrix_side(num_classes)
    figure = _new_figure(side + 1.0, side)
    ax = figure.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    font_size = 9 if num_classes <= _MAX_CLASSES_WITH_COUNTS else 7
    _label_classes(ax, class_names, font_size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    if num_classes <= _MAX_CLASSES_WITH_COUNTS:
        _write_counts(ax, counts, fractions, font_size)
    _save(figure, path)


def confusion_counts(labels, predictions, num_classes):
    """`(num_classes, num_classes)` counts: row = true class, column = predicted class."""
    pairs = np.asarray(labels, np.int64) * num_classes + np.asarray(predictions, np.int64)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall_f1(labels, predictions, num_classes):
    """Per-class precision, recall, F1 and support, as scikit-learn's with `zero_division=0`.

    Returns:
        Four `(num_classes,)` arrays: float precision, recall, F1, and int support.
    """
    counts = confusion_counts(labels, predictions, num_classes)
    hits = np.diag(counts).astype(np.float64)
    predicted, support = counts.sum(axis=0), counts.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(num_classes), where=support > 0)
    both = predicted + support
    f1 = np.divide(2 * hits, both, out=np.zeros(num_classes), where=both > 0)
    return precision, recall, f1, support


def _label_classes(ax, class_names, font_size):
    """Puts the class names on both axes; x labels turned 45 degrees (<= 10 classes) or 90."""
    ticks = np.arange(len(class_names))
    if len(class_names) <= 10:
        ax.set_xticks(ticks, class_names, rotation=45, ha="right", rotation_mode="anchor",
                      fontsize=font_size)
    else:
        ax.set_xticks(ticks, class_names, rotation=90, fontsize=font_size)
    ax.set_yticks(ticks, class_names, fontsize=font_size)


def _write_counts(ax, counts, fractions, font_size):
    """Writes each non-zero count in its cell, white on dark cells."""
    for row, column in zip(*np.nonzero(counts)):
        ax.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize=font_size,
                color="white" if fractions[row, column] > 0.5 else "black")


def plot_results(rows, path, title="Validation accuracy"):
    """Plots a results table as horizontal bars, best on top, each labelled with its value.

    Args:
        rows: a list of dicts with at least `"job"` (label) and
            `"val_accuracy"` (a number, or its text as read from a CSV); other
            keys are ignored. Equal accuracies keep their input order.
        path: where to write the PNG.
        title: axes title.

    Raises:
        ValueError: no rows, or a row without a finite `val_accuracy` or a `job`.
    """
    jobs, accuracies = _results_columns(rows)
    order = sorted(range(len(jobs)), key=lambda i: -accuracies[i])[::-1]  # barh draws bottom-up.
    figure = _new_figure(8.0, 1.5 + 0.35 * len(jobs))
    ax = figure.add_subplot()
    positions = np.arange(len(order))
    bars = ax.barh(positions, [accuracies[i] for i in order], color="tab:blue")
    ax.set_yticks(positions, [jobs[i] for i in order])
    ax.bar_label(bars, fmt="%.4f", padding=3, fontsize=8)
    ax.set_xlim(0.0, max(1.0, max(accuracies)) * 1.15)
    ax.set_xticks(np.linspace(0.0, 1.0, 6))
    ax.set_xlabel("validation accuracy")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title)
    _save(figure, path)


def _results_columns(rows):
    """Returns `(jobs, accuracies)`, two lists, from `plot_results`' rows (see there for errors)."""
    rows = list(rows)
    if not rows:
        raise ValueError("Expected at least one results row. Received: rows=[]. Pass the rows of a "
                         "results file with at least one job.")
    jobs, accuracies = [], []
    for index, row in enumerate(rows):
        accuracy = _to_float(row.get("val_accuracy"))
        if "job" not in row or not math.isfinite(accuracy):
            raise ValueError(
                f"Expected every results row to have a 'job' and a finite 'val_accuracy'. Received: "
                f"row {index}: {row!r}. Fix or remove that row."
            )
        jobs.append(_to_text(row["job"]))
        accuracies.append(accuracy)
    return jobs, accuracies


def _report_row(name, precision, recall, f1, support):
    """Returns one row of the class report, with plain Python numbers."""
    return {"class": name, "precision": float(precision), "recall": float(recall), "f1": float(f1),
            "support": int(support)}


def write_class_report(labels, predictions, class_names, path):
    """Writes per-class precision, recall, F1 and support as CSV.

    The numbers of `sklearn.metrics.precision_recall_fscore_support`
    (`labels=range(num_classes)`, `zero_division=0`, so a class that is never
    predicted or has no samples gets 0, not a warning), computed by
    `precision_recall_f1`. After one row per
    class come a `macro avg` and a `weighted avg` row, whose support is the
    number of samples (as in sklearn's `classification_report`).

    Args:
        labels: `(num_samples,)` true class indices.
        predictions: `(num_samples,)` predicted class indices.
        class_names: `(num_classes,)` names, one row each, in this order.
        path: where to write the CSV (columns `class,precision,recall,f1,support`).

    Returns:
        The `num_classes + 2` rows written, as dicts with those keys (floats
        and an int support).

    Raises:
        ValueError: see `_check_predictions`.
    """
    labels, predictions, class_names = _check_predictions(labels, predictions, class_names)
    per_class = precision_recall_f1(labels, predictions, len(class_names))
    rows = [_report_row(name, *values) for name, *values in zip(class_names, *per_class)]
    support = per_class[3]
    weights = support / support.sum() if support.sum() else np.zeros(len(support))
    for name, average in ((MACRO_AVG, np.mean), (WEIGHTED_AVG, lambda v: float(v @ weights))):
        rows.append(_report_row(name, *(average(v) for v in per_class[:3]), len(labels)))
    _write_csv(path, CLASS_REPORT_FIELDS, rows)
    return rows


def write_misclassified(filenames, labels, predictions, class_names, path):
    """Writes the misclassified samples, in input order, as CSV.

    Args:
        filenames: `(num_samples,)` sample ids (str, or UTF-8 bytes).
        labels: `(num_samples,)` true class indices.
        predictions: `(num_samples,)` predicted class indices.
        class_names: `(num_classes,)` names the indices index into.
        path: where to write the CSV (columns `filename,true,predicted`, the
            last two as class names); only the header when none is wrong.

    Returns:
        The number of rows written, not counting the header.

    Raises:
        ValueError: as many filenames as labels are needed; see also
            `_check_predictions`.
    """
    labels, predictions, class_names = _check_predictions(labels, predictions, class_names)
    filenames = list(filenames)
    if len(filenames) != len(labels):
        raise ValueError(
            f"Expected one filename per label. Received: {len(filenames)} filenames, "
            f"{len(labels)} labels. Pass the filenames in the order of the labels."
        )
    rows = [{"filename": _to_text(filenames[i]), "true": class_names[labels[i]],
             "predicted": class_names[predictions[i]]}
            for i in np.flatnonzero(labels != predictions)]
    _write_csv(path, MISCLASSIFIED_FIELDS, rows)
    return len(rows)


def _write_csv(path, fields, rows):
    """Writes `rows` (dicts) under a header of `fields` to the CSV file `path`."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
