"""One bad or unusual file in a class-folder dataset: what `extract_features` keeps, skips or refuses.

Each test builds a tiny `train/` + `val/` dataset and adds one odd file (or breaks one class folder),
then runs extraction with `on_bad_image="skip"` (the default) and `"fail"`:

* undecodable files (truncated JPEG, zero-byte JPEG, text named .png) are skipped and listed, or stop
  the run naming the file, leaving no cache behind;
* unusual but valid files (PNG named .jpg, 16-bit grey, CMYK, RGBA, palette PNG/GIF, grey JPEG) are
  decoded into RGB and kept;
* dataset-level problems (an empty or unreadable class folder) are one `DatasetError` naming the
  folder under both policies, and nothing is written.

The odd files and their expected outcomes are the catalogue `tests/bad_inputs.py` (`ODD_IMAGES`),
which the fault suite (`benchmarks/faults/bad_images.py`) runs through the console script too.
"""

import json
import os
import pathlib
import re
import select
import shutil
import signal
import tempfile
import time

import numpy as np
import pytest

from bottleneck_cache.features import extraction
from bottleneck_cache.pipeline import cache
from bottleneck_cache.pipeline import datasets
from tests import bad_inputs
from tests.conftest import write_folder_dataset

CLASSES = ("cat", "dog")
SIZE = bad_inputs.ODD_IMAGE_SIZE  # (height, width) of every synthetic image
# The odd files (tests/bad_inputs.py, shared with the fault suite), by kind.
ODD = {odd.kind: odd for odd in bad_inputs.ODD_IMAGES}
UNDECODABLE = {kind: odd for kind, odd in ODD.items() if odd.outcome == "skipped"}
VALID = {kind: odd for kind, odd in ODD.items() if odd.outcome == "kept"}


def extract(dataset_dir, output_dir, **kwargs):
    options = dict(network="vgg16", dataset_dir=str(dataset_dir), output_dir=str(output_dir),
                   weights="none", input_size=32, batch_size=4)
    options.update(kwargs)
    return extraction.extract_features(**options)


def _dataset(root, odd=(), class_names=CLASSES, train_per_class=3, val_per_class=2):
    """Writes `root/{train,val}/<class>/` of ordinary images plus odd files.

    Args:
        root: dataset folder.
        odd: `(split_folder, class_name, kind)` triples; each adds
            `<split_folder>/<class>/<class>_1_<kind>.<ext>`, which sorts between `<class>_1.png`
            and `<class>_2.jpg`, so that ordinary rows follow it in the same class and batch.

    Returns:
        `(root as str, [id of each odd file])`.
    """
    write_folder_dataset(root / "train", class_names, per_class=train_per_class, size=SIZE, seed=1)
    write_folder_dataset(root / "val", class_names, per_class=val_per_class, size=SIZE, seed=2)
    ids = []
    for split_folder, class_name, kind in odd:
        ids.append(f"{split_folder}/{class_name}/{class_name}_1_{kind}.{ODD[kind].extension}")
        ODD[kind].write(str(root / ids[-1]))
    return str(root), ids


def _expected_labels(dataset_dir):
    splits = datasets.prepare_splits(dataset_dir)
    return {name: dict(zip(split.ids, split.labels.tolist())) for name, split in splits.items()}


def _check_cache(result, all_ids, labels, skipped_ids, reasons=None):
    """The cache of `result` holds every id but `skipped_ids`, in order, with its own label."""
    loaded = cache.read_cache(result.path)
    kept = [name for name in all_ids if name not in skipped_ids]
    assert list(loaded.filenames) == kept
    assert loaded.labels.tolist() == [labels[name] for name in kept]  # rows still in step
    assert loaded.features.shape == (len(kept), 512) and np.isfinite(loaded.features).all()
    assert (result.num_samples, result.num_skipped) == (len(kept), len(skipped_ids))
    assert sorted(name for name, _ in loaded.skipped) == sorted(skipped_ids)
    for name, reason in loaded.skipped:
        assert name in reason  # the reason names the file
        if reasons:
            assert re.search(reasons[name], reason), reason
    return loaded


def _written(output):
    """Every entry (hidden temporaries and .parts folders included) under `output`."""
    return sorted(os.listdir(output)) if os.path.isdir(output) else []


# --------------------------------------------------------------------------------------------------
# Undecodable files.


@pytest.mark.parametrize("kind", sorted(UNDECODABLE))
def test_undecodable_file_is_skipped_and_listed(kind, tmp_path, caplog):
    root, (bad,) = _dataset(tmp_path / "pets", [("train", "cat", kind)])
    results = extract(root, tmp_path / "out")
    labels = _expected_labels(root)
    assert [(r.split, r.num_samples, r.num_skipped, r.reused) for r in results] == [
        ("train", 6, 1, False), ("validation", 4, 0, False)]
    train = _check_cache(results[0], list(labels["train"]), labels["train"], [bad],
                         {bad: rf"Expected '.*{re.escape(bad)}' to be a readable image\. Received: "
                               rf"{UNDECODABLE[kind].reason}"})
    assert bad not in train.filenames
    _check_cache(results[1], list(labels["validation"]), labels["validation"], [])
    assert f"Skipped {bad}: " in caplog.text


@pytest.mark.parametrize("kind", sorted(UNDECODABLE))
def test_undecodable_file_fails_on_request_and_writes_nothing(kind, tmp_path):
    root, (bad,) = _dataset(tmp_path / "pets", [("train", "dog", kind)])
    output = tmp_path / "out"
    with pytest.raises(datasets.DatasetError, match=rf"Expected '[^']*{re.escape(bad)}' to be a readable "
                       rf"image\. Received: {UNDECODABLE[kind].reason}.*Remove or replace the file\."):
        extract(root, output, on_bad_image="fail")
    assert _written(output) == []


def test_undecodable_validation_file_fails_only_that_split(tmp_path):
    root, (bad,) = _dataset(tmp_path / "pets", [("val", "cat", "truncated_jpeg")])
    output = tmp_path / "out"
    with pytest.raises(datasets.DatasetError, match=rf"'[^']*{re.escape(bad)}' to be a readable image"):
        extract(root, output, on_bad_image="fail")
    # The train split was finished before the validation split started; nothing of the latter is left.
    assert _written(output) == ["vgg16_pets_bottleneck_features_train.h5"]
    assert cache.read_cache(str(output / "vgg16_pets_bottleneck_features_train.h5")).skipped == ()


@pytest.mark.parametrize("target, received", [
    ("../../nowhere/cat.jpg", r"a symbolic link to '\.\./\.\./nowhere/cat\.jpg', which does not exist"),
    ("cat_1_link.jpg", r"a symbolic link loop \('cat_1_link\.jpg' leads back to itself, never to a file\)"),
])
@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_dangling_link_or_link_loop_is_a_bad_image(target, received, policy, tmp_path, caplog):
    root, _ = _dataset(tmp_path / "pets")
    bad = "val/cat/cat_1_link.jpg"
    os.symlink(target, os.path.join(root, bad))
    output = tmp_path / "out"
    message = rf"Expected '[^']*{re.escape(bad)}' to be a readable image\. Received: {received}\. Remove the link"
    if policy == "fail":
        with pytest.raises(datasets.DatasetError, match=message):
            extract(root, output, on_bad_image="fail")
        assert _written(output) == ["vgg16_pets_bottleneck_features_train.h5"]  # finished before val/
        return
    results = extract(root, output)
    labels = _expected_labels(root)
    assert [(r.split, r.num_samples, r.num_skipped) for r in results] == [("train", 6, 0), ("validation", 4, 1)]
    _check_cache(results[1], list(labels["validation"]), labels["validation"], [bad], {bad: message})
    assert f"Skipped {bad}: " in caplog.text


# --------------------------------------------------------------------------------------------------
# Unusual but valid files.


@pytest.mark.parametrize("kind", sorted(ODD))
def test_odd_file_is_of_its_kind(kind, tmp_path):
    # The shared catalogue (also the fault suite's) writes what it says: undecodable or of its mode.
    odd = ODD[kind]
    path = str(tmp_path / f"odd.{odd.extension}")
    odd.write(path)
    assert odd.problem(path) is None
    other = ODD["text_named_png" if odd.outcome == "kept" else "png_named_jpg"]
    other.write(path)
    assert odd.problem(path) is not None  # and the check can fail


@pytest.mark.parametrize("kind", sorted(VALID))
def test_unusual_valid_file_is_decoded_to_rgb(kind, tmp_path):
    root, (odd,) = _dataset(tmp_path / "pets", [("train", "cat", kind)])
    expected, tolerance = VALID[kind].rgb, VALID[kind].tolerance
    assert VALID[kind].problem(os.path.join(root, odd)) is None  # the file really is of that kind
    split = datasets.prepare_splits(root)["train"]
    pixels = split.load([split.ids.index(odd)], SIZE)
    assert pixels.shape == (1, *SIZE, 3) and pixels.dtype == np.uint8
    # A solid colour stays solid: every pixel is the expected RGB value.
    np.testing.assert_allclose(pixels[0].reshape(-1, 3).min(axis=0), expected, atol=tolerance)
    np.testing.assert_allclose(pixels[0].reshape(-1, 3).max(axis=0), expected, atol=tolerance)


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_every_unusual_valid_file_is_kept(policy, tmp_path):
    # One of each valid kind in each split: all become rows, none is skipped, under both policies.
    kinds = sorted(VALID)
    odd = [(split_folder, CLASSES[i % 2], kind) for i, kind in enumerate(kinds) for split_folder in ("train", "val")]
    root, ids = _dataset(tmp_path / "pets", odd)
    results = extract(root, tmp_path / "out", on_bad_image=policy)
    labels = _expected_labels(root)
    assert [(r.num_samples, r.num_skipped) for r in results] == [(6 + len(kinds), 0), (4 + len(kinds), 0)]
    for result, split in zip(results, ("train", "validation")):
        loaded = _check_cache(result, list(labels[split]), labels[split], [])
        assert len(set(ids) & set(loaded.filenames)) == len(kinds)


# --------------------------------------------------------------------------------------------------
# Dataset-level problems: an empty class folder, an unreadable class folder.


@pytest.mark.parametrize("policy", ["skip", "fail"])
@pytest.mark.parametrize("split_folder, leftover", [
    ("train", None),  # the folder exists but is empty
    ("val", None),
    ("train", "notes.txt"),  # only a file that is not an image
])
def test_empty_class_folder_is_one_error_and_writes_nothing(split_folder, leftover, policy, tmp_path):
    root, _ = _dataset(tmp_path / "pets")
    bad_inputs.empty_class_folder(os.path.join(root, split_folder), "dog", leftover)
    output = tmp_path / "out"
    with pytest.raises(datasets.DatasetError, match=rf"Expected at least one image in every class folder of "
                       rf"'{re.escape(os.path.join(root, split_folder))}'\. Received: no images in 'dog'\. "
                       rf"Add images or remove the empty folder\."):
        extract(root, output, on_bad_image=policy)
    assert _written(output) == []


def _extract_both_policies(root, output, locked):
    """Extracts `root` with each policy; returns what happened, as JSON-able data.

    Runs in-process when not root, else in a forked child that dropped to `nobody`.
    """
    try:
        os.listdir(locked)
    except PermissionError:
        pass
    else:
        return {"unprivileged": False}
    outcome = {"unprivileged": True}
    for policy in ("skip", "fail"):
        try:
            extract(root, output, on_bad_image=policy)
            outcome[policy] = None
        except Exception as error:  # reported to the parent, which checks the type
            outcome[policy] = [type(error).__name__, str(error)]
    outcome["written"] = _written(output)
    return outcome


def _run_unprivileged(function, *args, timeout=20):
    """Returns `function(*args)` run without root's right to read unreadable folders.

    Not root: runs it here. Root (where chmod 000 does not stop reading): runs it in a forked child
    that drops to uid/gid 65534 (`nobody`) and sends its JSON result back through a pipe. A fork
    (rather than `setpriv ... python`) needs no access to the interpreter's files, which may live
    under a root-only home; the child uses only modules already imported here.
    """
    if os.geteuid() != 0:
        return function(*args)
    if not hasattr(os, "fork"):
        pytest.skip("Running as root and os.fork is unavailable: cannot test an unreadable folder.")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 0
        try:
            os.close(read_end)
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            except OSError as error:
                result = {"skip": f"{type(error).__name__}: {error}"}
            else:
                try:
                    result = {"ok": function(*args)}
                except BaseException as error:  # pylint: disable=broad-except
                    result = {"error": f"{type(error).__name__}: {error}"}
            os.write(write_end, json.dumps(result).encode("utf-8"))
            os.close(write_end)
        except BaseException:  # pylint: disable=broad-except
            status = 1
        finally:
            os._exit(status)  # never return into pytest in the child
    os.close(write_end)
    data, deadline = b"", time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read_end], [], [], remaining)[0]:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"The unprivileged child did not finish within {timeout} s.")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    result = json.loads(data.decode("utf-8")) if data else {"error": "the child exited without a result"}
    if "skip" in result:
        pytest.skip(f"Running as root and could not drop to uid 65534: {result['skip']}")
    if "error" in result:
        pytest.fail(f"The check run as uid 65534 raised {result['error']}")
    return result["ok"]


@pytest.fixture
def locked_dataset(tmp_path, request):
    """A dataset with one folder (`request.param`, relative to its root) chmod 000, and an output folder.

    Both sit in a place that `nobody` can reach.
    """
    relative = request.param
    if os.geteuid() == 0:
        # tmp_path sits under a 0700 folder of root's: `nobody` needs a place it can reach.
        base = tempfile.mkdtemp(prefix="test_bad_images-")
        os.chmod(base, 0o755)
    else:
        base = str(tmp_path)
    try:
        root, _ = _dataset(pathlib.Path(base) / "pets")
        for directory, subdirectories, files in os.walk(base):
            for name in subdirectories:
                os.chmod(os.path.join(directory, name), 0o755)
            for name in files:
                os.chmod(os.path.join(directory, name), 0o644)
        output = os.path.join(base, "out")
        os.makedirs(output)
        os.chmod(output, 0o777)  # writable, so that only the library's checks keep it empty
        locked = os.path.join(root, relative)
        os.chmod(locked, 0)
        yield root, output, locked
    finally:
        locked = os.path.join(base, "pets", relative)
        if os.path.isdir(locked):
            os.chmod(locked, 0o755)  # so that the folder can be removed
        if base != str(tmp_path):
            shutil.rmtree(base)


def _outcome_without_read_rights(locked_dataset):
    """`_extract_both_policies` on a `locked_dataset`, run without root's right to read it.

    Skips the test where chmod 000 does not stop this process from reading.
    """
    outcome = _run_unprivileged(_extract_both_policies, *locked_dataset)
    if not outcome["unprivileged"]:
        pytest.skip("chmod 000 does not stop this process from reading (capabilities or file system).")
    return outcome


@pytest.mark.parametrize("locked_dataset", ["train/dog", "val/dog"], indirect=True)
def test_unreadable_class_folder_is_one_error_and_writes_nothing(locked_dataset):
    locked = locked_dataset[2]
    outcome = _outcome_without_read_rights(locked_dataset)
    for policy in ("skip", "fail"):
        assert outcome[policy] is not None, f"on_bad_image={policy} extracted a dataset with an unreadable folder"
        kind, message = outcome[policy]
        assert kind == "DatasetError", f"on_bad_image={policy}: {kind}: {message}"
        assert f"'{locked}' cannot be read" in message, message  # names the folder
    assert outcome["skip"] == outcome["fail"]
    assert outcome["written"] == []


@pytest.mark.parametrize("locked_dataset", ["train/dog"], indirect=True)
def test_unreadable_class_folder_message_says_it_cannot_be_read(locked_dataset):
    _, message = _outcome_without_read_rights(locked_dataset)["fail"]
    assert re.search(r"[Pp]ermission denied|cannot be read|not readable|unreadable", message), message
    assert "Add images or remove the empty folder" not in message, message


@pytest.mark.parametrize("locked_dataset", ["train"], indirect=True)
def test_unreadable_split_folder_is_one_error_and_writes_nothing(locked_dataset):
    locked = locked_dataset[2]
    outcome = _outcome_without_read_rights(locked_dataset)
    for policy in ("skip", "fail"):
        kind, message = outcome[policy]
        assert kind == "DatasetError" and f"'{locked}'" in message, f"on_bad_image={policy}: {kind}: {message}"
    assert outcome["written"] == []


# --------------------------------------------------------------------------------------------------
# Everything at once.


def test_all_kinds_at_once_counts_kept_and_skipped(tmp_path):
    classes = ("cat", "dog", "fish")
    kinds = sorted(UNDECODABLE) + sorted(VALID)
    odd = [(split_folder, classes[i % 3], kind) for i, kind in enumerate(kinds) for split_folder in ("train", "val")]
    root, ids = _dataset(tmp_path / "zoo", odd, class_names=classes, train_per_class=2, val_per_class=2)
    labels = _expected_labels(root)
    bad = [name for name in ids if any(f"_1_{kind}." in name for kind in UNDECODABLE)]
    assert len(bad) == 2 * len(UNDECODABLE) and len(ids) == 2 * len(kinds)

    # fail: stops at the first undecodable file of the train split, in file order; nothing written.
    first_bad = min((name for name in bad if name.startswith("train/")), key=list(labels["train"]).index)
    with pytest.raises(datasets.DatasetError, match=rf"Expected '[^']*{re.escape(first_bad)}' to be a readable"):
        extract(root, tmp_path / "failed", on_bad_image="fail")
    assert _written(tmp_path / "failed") == []

    # skip: every valid kind kept, every undecodable one skipped and listed, in both splits.
    results = extract(root, tmp_path / "out")
    ordinary = 2 * len(classes)
    assert [(r.split, r.num_samples, r.num_skipped) for r in results] == [
        ("train", ordinary + len(VALID), len(UNDECODABLE)),
        ("validation", ordinary + len(VALID), len(UNDECODABLE)),
    ]
    for result, split in zip(results, ("train", "validation")):
        skipped = [name for name in bad if name in labels[split]]
        reasons = {name: next(odd.reason for kind, odd in UNDECODABLE.items() if f"_1_{kind}." in name)
                   for name in skipped}
        _check_cache(result, list(labels[split]), labels[split], skipped, reasons)
    assert [r.reused for r in extract(root, tmp_path / "out")] == [True, True]
