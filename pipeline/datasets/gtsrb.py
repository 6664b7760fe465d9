"""`gtsrb`: the official GTSRB layout.

`Final_Training/Images/000NN/*.ppm` with `GT-000NN.csv`, and/or `Final_Test/Images/*.ppm` with
`GT-final_test.csv` (or any `GT-*.csv` with a ClassId column), at `<root>` or `<root>/GTSRB`.
"""

import csv
import os
import re

import numpy as np

from bottleneck_cache.pipeline.datasets import core
from bottleneck_cache.pipeline.datasets import errors
from bottleneck_cache.pipeline.datasets import listing

NAME = "gtsrb"
LAYOUT = "gtsrb: Final_Training/Images/000NN/ and/or Final_Test/"
GTSRB_SUBFOLDER = "GTSRB"


def detect(path):
    """Whether `path` (or its GTSRB/ sub-folder) holds Final_Training/Images/ or Final_Test/."""
    return _gtsrb_folder(path) is not None


def _gtsrb_folder(path):
    """The folder holding Final_Training/ or Final_Test/ (`path` or `path/GTSRB`), or None."""
    if not os.path.isdir(path):
        return None
    for folder in (path, os.path.join(path, GTSRB_SUBFOLDER)):
        if os.path.isdir(os.path.join(folder, "Final_Training", "Images")) or os.path.isdir(
            os.path.join(folder, "Final_Test")
        ):
            return folder
    return None


def _read_gtsrb_csv(csv_path):
    """Returns the rows of a GTSRB annotation CSV as dicts (`;`-separated, with a header)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f, delimiter=";"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise errors.DatasetError(f"Expected '{csv_path}' to be a readable CSV file. Received: {error}.") from error


def _gtsrb_rows(csv_path, image_folder):
    """`[(image path, class id)]` from a GTSRB CSV with Filename and ClassId columns."""
    rows = _read_gtsrb_csv(csv_path)
    columns = set(rows[0]) if rows else set()
    if not {"Filename", "ClassId"} <= columns:
        raise errors.DatasetError(
            f"Expected '{csv_path}' to be ';'-separated with Filename and ClassId columns. "
            f"Received columns: {sorted(c for c in columns if c) or 'none'}."
        )
    result = []
    for row in rows:
        image_path = os.path.join(image_folder, row["Filename"])
        if not os.path.isfile(image_path):
            raise errors.DatasetError(
                f"Expected the image '{row['Filename']}' listed in '{csv_path}' at '{image_path}'. "
                f"Received: no such file. Restore the image or remove its row."
            )
        try:
            class_id = int(row["ClassId"])
        except (TypeError, ValueError):
            class_id = -1
        if class_id < 0:
            raise errors.DatasetError(
                f"Expected the ClassId of '{row['Filename']}' in '{csv_path}' to be an integer >= 0. "
                f"Received: {row['ClassId']!r}."
            )
        result.append((image_path, class_id))
    return result


def _gtsrb_test_csv(test_folder):
    """The first CSV with a ClassId column in Final_Test/ or Final_Test/Images/, or None."""
    candidates = [os.path.join(test_folder, "GT-final_test.csv")]
    for folder in (test_folder, os.path.join(test_folder, "Images")):
        if os.path.isdir(folder):
            candidates.extend(
                os.path.join(folder, name) for name in sorted(os.listdir(folder)) if re.fullmatch(r"GT-.*\.csv", name)
            )
    for candidate in candidates:
        if os.path.isfile(candidate):
            rows = _read_gtsrb_csv(candidate)
            if rows and "ClassId" in rows[0]:
                return candidate
    return None


def _training_rows(training_folder):
    """`[(image path, class id)]` of Final_Training/Images/000NN/, each class folder with its GT-000NN.csv."""
    rows = []
    for class_folder in listing.visible_subfolders(training_folder):
        class_path = os.path.join(training_folder, class_folder)
        csv_path = os.path.join(class_path, f"GT-{class_folder}.csv")
        if not os.path.isfile(csv_path):
            raise errors.DatasetError(
                f"Expected the annotation file '{csv_path}' for GTSRB class folder '{class_folder}'. "
                f"Received: no such file. Restore it, or use --dataset_format=folder to label by folder."
            )
        rows.extend(_gtsrb_rows(csv_path, class_path))
    return rows


def load(path):
    """Loads the GTSRB images at `path` (or in its GTSRB/ sub-folder), labelled by their CSV files.

    Args:
        path: the dataset folder.

    Returns:
        `{"train": Split}` from Final_Training/, plus `"validation"` from Final_Test/ when both are
        there (Final_Test/ alone is "train"); the splits hold paths, and their class names are
        "00000".."000NN".

    Raises:
        DatasetError: neither folder, a missing or malformed CSV, or a listed image that is missing.
    """
    folder = _gtsrb_folder(path)
    if folder is None:
        raise errors.DatasetError(
            f"Expected the GTSRB layout (Final_Training/Images/000NN/ and/or Final_Test/) in '{path}'. "
            f"Received: neither found. Check the path or --dataset_format."
        )
    training_folder = os.path.join(folder, "Final_Training", "Images")
    parts = {}
    rows = _training_rows(training_folder) if os.path.isdir(training_folder) else []
    if rows:
        parts["train"] = rows
    test_folder = os.path.join(folder, "Final_Test")
    test_csv = _gtsrb_test_csv(test_folder) if os.path.isdir(test_folder) else None
    if test_csv is not None:
        parts["validation" if parts else "train"] = _gtsrb_rows(test_csv, os.path.join(test_folder, "Images"))
    if not parts:
        raise errors.DatasetError(
            f"Expected labelled GTSRB images in '{folder}': Final_Training/Images/000NN/ with GT-000NN.csv, or "
            f"Final_Test/ with a GT-*.csv that has a ClassId column. Received: neither. Add the annotation files."
        )
    top = max(class_id for rows in parts.values() for _, class_id in rows)
    if os.path.isdir(training_folder):
        top = max([top] + [int(name) for name in listing.visible_subfolders(training_folder) if name.isdigit()])
    class_names = tuple(f"{class_id:05d}" for class_id in range(top + 1))
    return {
        name: core.Split(
            name=name,
            class_names=class_names,
            labels=np.asarray([class_id for _, class_id in rows], dtype=np.int64),
            ids=tuple(os.path.relpath(p, path).replace(os.sep, "/") for p, _ in rows),
            paths=tuple(os.path.abspath(p) for p, _ in rows),
        )
        for name, rows in parts.items()
    }
