"""Tests of `classifiers.reports` on tiny synthetic inputs."""

import csv
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics

from bottleneck_cache.classifiers import reports

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Three classes, ten samples: class "cat" is perfect, "dog" loses one sample to "fish",
# "fish" gains it and loses one to "cat".
LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
PREDICTIONS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
CLASS_NAMES = ("cat", "dog", "fish")


def png_size(path):
    """Asserts `path` is a valid PNG and returns its `(width, height)` in pixels."""
    with open(path, "rb") as f:
        assert f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def write_history(path, rows, columns=("epoch", "accuracy", "loss", "val_accuracy", "val_loss")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return str(path)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def noisy_predictions(num_classes, per_class=5, seed=0):
    """Returns `(labels, predictions)` with about a fifth of the predictions wrong."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    wrong = rng.random(len(labels)) < 0.2
    return labels, np.where(wrong, rng.integers(0, num_classes, len(labels)), labels)


def test_plot_history_of_several_epochs_with_every_keras_column(tmp_path):
    columns = ("epoch", "accuracy", "learning_rate", "loss", "top5_accuracy", "val_accuracy",
               "val_loss", "val_top5_accuracy")
    rows = [(e, 0.5 + 0.1 * e, 0.001, 1.0 - 0.2 * e, 0.8 + 0.05 * e, 0.45 + 0.1 * e, 1.1 - 0.2 * e,
             0.75 + 0.05 * e) for e in range(4)]
    path = tmp_path / "history.png"
    reports.plot_history(write_history(tmp_path / "history.csv", rows, columns), path,
                         title="softmax")
    width, height = png_size(path)
    assert width > height >= 200  # two panels side by side


def test_plot_history_of_one_row_draws_markers(tmp_path):
    # The logreg head's history: one row, epoch 0.
    history = write_history(tmp_path / "history.csv", [(0, 0.9, 0.3, 0.85, 0.4)])
    path = tmp_path / "history.png"
    reports.plot_history(history, path)
    assert min(png_size(path)) >= 200


def test_plot_history_refuses_a_file_without_rows(tmp_path):
    history = write_history(tmp_path / "history.csv", [])
    with pytest.raises(ValueError, match="at least one epoch"):
        reports.plot_history(history, tmp_path / "history.png")
    assert not (tmp_path / "history.png").exists()


def test_plot_confusion_matrix_grows_with_the_class_count(tmp_path):
    small, large = tmp_path / "cm3.png", tmp_path / "cm43.png"
    reports.plot_confusion_matrix(LABELS, PREDICTIONS, CLASS_NAMES, small, title="3 classes")
    labels, predictions = noisy_predictions(43)
    reports.plot_confusion_matrix(labels, predictions, [f"sign {i:02d}" for i in range(43)], large)
    small_size, large_size = png_size(small), png_size(large)
    assert min(small_size) >= 200
    assert large_size[0] > small_size[0] and large_size[1] > small_size[1]
    assert min(large_size) >= 43 * 20  # at least 20 pixels per class


def test_plot_confusion_matrix_with_a_class_without_samples(tmp_path):
    # Nothing of "fish" in the samples: its row stays blank instead of dividing by zero.
    path = tmp_path / "cm.png"
    reports.plot_confusion_matrix([0, 1, 1], [0, 1, 2], CLASS_NAMES, path)
    png_size(path)


@pytest.mark.parametrize("labels, predictions, message", [
    ([0, 1, 3], [0, 1, 2], r"labels in \[0, 3\)"),
    ([0, 1, 2], [0, -1, 2], r"predictions in \[0, 3\)"),
    ([0, 1, 2], [0, 1], "as many predictions as labels"),
    ([], [], "at least one sample"),
    ([[0, 1]], [[0, 1]], r"shape \(num_samples,\)"),
])
def test_bad_predictions_are_refused(tmp_path, labels, predictions, message):
    with pytest.raises(ValueError, match=message):
        reports.plot_confusion_matrix(labels, predictions, CLASS_NAMES, tmp_path / "cm.png")
    with pytest.raises(ValueError, match=message):
        reports.write_class_report(labels, predictions, CLASS_NAMES, tmp_path / "report.csv")


def test_plot_results(tmp_path):
    rows = [{"job": "vgg16_softmax", "val_accuracy": 0.91, "head": "softmax"},
            {"job": "resnet50_logreg", "val_accuracy": 0.97},
            {"job": "mobilenet_v2_mlp", "val_accuracy": "0.88"}]  # as read from a CSV
    path = tmp_path / "results.png"
    reports.plot_results(rows, path)
    assert min(png_size(path)) >= 150
    many = tmp_path / "many.png"
    reports.plot_results([{"job": f"job {i}", "val_accuracy": i / 20} for i in range(20)], many)
    assert png_size(many)[1] > png_size(path)[1]


@pytest.mark.parametrize("rows", [[], [{"job": "a"}], [{"val_accuracy": 0.5}],
                                  [{"job": "a", "val_accuracy": float("nan")}]])
def test_plot_results_refuses_incomplete_rows(tmp_path, rows):
    with pytest.raises(ValueError, match="row"):
        reports.plot_results(rows, tmp_path / "results.png")


def test_write_class_report_matches_sklearn(tmp_path):
    path = tmp_path / "report.csv"
    rows = reports.write_class_report(LABELS, PREDICTIONS, CLASS_NAMES, path)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        LABELS, PREDICTIONS, labels=range(3), zero_division=0)
    assert [row["class"] for row in rows] == ["cat", "dog", "fish", "macro avg", "weighted avg"]
    for i, row in enumerate(rows[:3]):
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
    assert rows[1] == {"class": "dog", "precision": 1.0, "recall": 0.75, "f1": pytest.approx(6 / 7),
                       "support": 4}
    for row, average in ((rows[3], "macro"), (rows[4], "weighted")):
        expected = metrics.precision_recall_fscore_support(
            LABELS, PREDICTIONS, labels=range(3), average=average, zero_division=0)
        assert [row["precision"], row["recall"], row["f1"]] == pytest.approx(expected[:3])
        assert row["support"] == 10
    # The CSV holds the same rows.
    written = read_csv(path)
    assert list(written[0]) == ["class", "precision", "recall", "f1", "support"]
    assert [{k: (v if k == "class" else float(v)) for k, v in row.items()} for row in written] == rows


def test_write_class_report_perfect_and_absent_classes(tmp_path):
    # "cat" perfect; "dog" never predicted; "fish" never predicted nor present: zeros, no warning.
    rows = reports.write_class_report([0, 0, 1], [0, 0, 0], CLASS_NAMES, tmp_path / "report.csv")
    cat, dog, fish = rows[:3]
    assert (cat["recall"], cat["support"]) == (1.0, 2)
    assert (dog["precision"], dog["recall"], dog["f1"], dog["support"]) == (0.0, 0.0, 0.0, 1)
    assert (fish["precision"], fish["recall"], fish["f1"], fish["support"]) == (0.0, 0.0, 0.0, 0)
    perfect = reports.write_class_report(LABELS, LABELS, CLASS_NAMES, tmp_path / "perfect.csv")
    assert all((row["precision"], row["recall"], row["f1"]) == (1.0, 1.0, 1.0) for row in perfect)


def test_write_misclassified_lists_exactly_the_wrong_rows(tmp_path):
    filenames = [f"img_{i}.jpg" for i in range(len(LABELS))]
    path = tmp_path / "misclassified.csv"
    count = reports.write_misclassified(filenames, LABELS, PREDICTIONS, CLASS_NAMES, path)
    assert count == 2
    assert read_csv(path) == [{"filename": "img_6.jpg", "true": "dog", "predicted": "fish"},
                              {"filename": "img_9.jpg", "true": "fish", "predicted": "cat"}]


def test_write_misclassified_with_none_wrong_and_bytes_filenames(tmp_path):
    path = tmp_path / "misclassified.csv"
    filenames = [f"dossier/é_{i}.png".encode() for i in range(len(LABELS))]
    assert reports.write_misclassified(filenames, LABELS, LABELS, CLASS_NAMES, path) == 0
    assert path.read_bytes() == b"filename,true,predicted\r\n"
    reports.write_misclassified(filenames, LABELS, PREDICTIONS, CLASS_NAMES, path)
    assert read_csv(path)[0]["filename"] == "dossier/é_6.png"
    with pytest.raises(ValueError, match="one filename per label"):
        reports.write_misclassified(filenames[:-1], LABELS, PREDICTIONS, CLASS_NAMES, path)


def test_importing_reports_loads_no_plotting_or_deep_learning_module():
    code = ("import sys, bottleneck_cache.classifiers.reports; "
            "print(sorted(m for m in ('matplotlib', 'matplotlib.pyplot', 'tensorflow', 'keras') "
            "if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=pathlib.Path(__file__).resolve().parents[1])
    assert output.stdout.strip() == "[]"


def test_plots_leave_no_pyplot_figure_open(tmp_path):
    reports.plot_confusion_matrix(LABELS, PREDICTIONS, CLASS_NAMES, tmp_path / "cm.png")
    reports.plot_results([{"job": "a", "val_accuracy": 0.5}], tmp_path / "results.png")
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()


@pytest.mark.parametrize("labels, predictions, class_names, message", [
    ([0], [0], [], r"^Expected at least one class name\. Received: class_names=\[\]\. Pass the names that "
                   r"the labels index\.$"),
    ([0.0, 1.0], [0, 1], CLASS_NAMES, r"^Expected integer class indices in labels\. Received: dtype float64\. "
                                      r"Pass indices into class_names"),
    ([0, 1, 3], [0, 1, 2], CLASS_NAMES, r"^Expected labels in \[0, 3\) \(3 class names\)\. Received: 3 at "
                                        r"index 2\. Pass the class names the indices were made with\.$"),
    ([[0, 1]], [[0, 1]], CLASS_NAMES, r"^Expected labels of shape \(num_samples,\)\. Received: shape \(1, 2\)\. "
                                      r"Pass one class index per sample\.$"),
    ([0, 1, 2], [0, 1], CLASS_NAMES, r"^Expected as many predictions as labels\. Received: 3 labels, 2 "
                                     r"predictions\. Pass one prediction per label\.$"),
    ([], [], CLASS_NAMES, r"^Expected at least one sample\. Received: empty labels and predictions\. Pass the "
                          r"labels and predictions of at least one image\.$"),
])
def test_bad_predictions_messages(tmp_path, labels, predictions, class_names, message):
    with pytest.raises(ValueError, match=message):
        reports.write_class_report(labels, predictions, class_names, tmp_path / "report.csv")


@pytest.mark.parametrize("rows, message", [
    ([], r"^Expected at least one results row\. Received: rows=\[\]\. Pass the rows of a results file"),
    ([{"job": "a", "val_accuracy": 0.5}, {"val_accuracy": 0.5}],
     r"^Expected every results row to have a 'job' and a finite 'val_accuracy'\. Received: row 1: "
     r"\{'val_accuracy': 0\.5\}\. Fix or remove that row\.$"),
])
def test_plot_results_messages(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        reports.plot_results(rows, tmp_path / "results.png")
    assert not (tmp_path / "results.png").exists()


def test_history_and_misclassified_messages(tmp_path):
    write_history(tmp_path / "history.csv", [[1, 0.5]], columns=("epoch", "lr"))
    with pytest.raises(ValueError, match=r"^Expected loss or accuracy columns in the history file .*history\.csv\. "
                       r"Received columns: \['epoch', 'lr'\]\. Pass a history\.csv written by feature_extraction"):
        reports.plot_history(tmp_path / "history.csv", tmp_path / "history.png")
    write_history(tmp_path / "empty.csv", [])
    with pytest.raises(ValueError, match=r"^Expected at least one epoch in the history file .*empty\.csv\. "
                       r"Received: no data rows\. Pass the history\.csv of a head that trained"):
        reports.plot_history(tmp_path / "empty.csv", tmp_path / "history.png")
    with pytest.raises(ValueError, match=r"^Expected one filename per label\. Received: 1 filenames, 2 labels\. "
                       r"Pass the filenames in the order of the labels\.$"):
        reports.write_misclassified(["a.jpg"], [0, 1], [1, 0], CLASS_NAMES, tmp_path / "wrong.csv")
