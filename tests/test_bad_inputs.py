"""Issue 10's bad inputs (`tests/bad_inputs.py`) through `extract_features`: one clear message or
the promised handling, and no file of the user's touched.

The same cases (`bad_inputs.CASES`) run as subprocesses, with the output-folder cases, in the fault
suite's part 7 (`benchmarks/faults/user_files.py`).
"""

import logging
import os
import re
import subprocess
import sys

import pytest

from bottleneck_cache.features import extraction
from bottleneck_cache.pipeline import cache
from tests import bad_inputs

CASES = {case.name: case for case in bad_inputs.CASES}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _options(case, dataset_dir, output_dir):
    options = dict(network="vgg16", dataset_dir=dataset_dir, output_dir=str(output_dir), weights="none",
                   input_size=32, batch_size=4, precision="float32")
    for flag in case.flags:
        name, value = flag[2:].split("=", 1)
        options[name] = value
    return options


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_is_refused_or_handled_and_touches_no_user_file(name, tmp_path, caplog):
    case = CASES[name]
    dataset = case.build(str(tmp_path / "data"))
    output = tmp_path / "out"
    before = bad_inputs.snapshot(tmp_path / "data")
    assert before  # the snapshot sees the user's files
    with caplog.at_level(logging.WARNING):
        if case.outcome == "refused":
            with pytest.raises(ValueError, match=case.match):
                extraction.extract_features(**_options(case, dataset, output))
            assert not output.exists() or os.listdir(output) == []
        else:
            results = extraction.extract_features(**_options(case, dataset, output))
            train = cache.read_cache(results[0].path)
            if case.class_names:
                assert tuple(train.class_names) == case.class_names
            if case.outcome == "skipped":
                assert [skipped for skipped, _ in train.skipped] == [case.skipped]
                assert re.search(case.match, train.skipped[0][1]), train.skipped[0][1]
                assert case.skipped not in train.filenames
            else:
                assert not train.skipped
                warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
                assert bool(case.match) == any(re.search(case.match, w) for w in warnings), warnings
    assert bad_inputs.destroyed(before) == []


def test_snapshot_sees_a_changed_or_removed_file(tmp_path):
    root = bad_inputs.ordinary(str(tmp_path))
    before = bad_inputs.snapshot(root, tmp_path / "missing")
    assert len(before) == 10
    first, second = sorted(before)[:2]
    with open(first, "ab") as f:
        f.write(b"\0")
    os.remove(second)
    assert bad_inputs.destroyed(before) == [first, second]


def test_dangling_link_fixed_later_is_extracted_again(tmp_path):
    case = CASES["dangling symlink, skip"]
    root = case.build(str(tmp_path))
    first = extraction.extract_features(**_options(case, root, tmp_path / "out"))
    assert first[0].num_skipped == 1
    link = os.path.join(root, "train", "cat", "gone.jpg")
    os.remove(link)
    os.symlink(os.path.join(root, "train", "cat", "cat_0.jpg"), link)
    again = extraction.extract_features(**_options(case, root, tmp_path / "out"), overwrite=True)
    assert (again[0].reused, again[0].num_skipped, again[0].num_samples) == (False, 0, 7)


def test_estimated_cache_size_is_announced_above_one_gib(tmp_path, caplog):
    shape = (112, 112, 64)  # VGG16's block1_pool at 224 px, without pooling
    per_row = 4 * 112 * 112 * 64 + 10
    assert extraction.estimated_cache_bytes(300, 0, shape) == 300 * per_row
    assert extraction.estimated_cache_bytes(100, 2, shape) == 300 * per_row
    path = str(tmp_path / "vgg16_x_bottleneck_features_train.h5")
    with caplog.at_level(logging.WARNING):
        assert extraction.announce_cache_size(path, 300, 0, shape) < extraction.LARGE_CACHE_BYTES
        assert not caplog.records
        extraction.announce_cache_size(path, 400, 0, shape)
    (record,) = caplog.records
    assert re.fullmatch(
        r"Writing a cache of about 1\.2 GiB to .*vgg16_x_bottleneck_features_train\.h5 \(400 rows of "
        r"112x112x64 float32 features\); about twice that is needed until its checkpoints are merged "
        r"\(\d+\.\d GiB free there\)\. For a smaller cache, use --pooling=avg, .*", record.getMessage())


def test_suggested_dataset_name():
    assert extraction.suggested_name("my pets (2024)") == "my_pets_2024"
    assert extraction.suggested_name("..ümlaut") == "mlaut"
    assert extraction.suggested_name("???") == "dataset"


def _cli(tmp_path, *flags):
    command = [sys.executable, "-m", "bottleneck_cache.bin.extract_features", "--weights=none", "--input_size=32",
               *flags]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", ["stray top-level folder", "empty --network=", "float .npz outside 0..255",
                                  "non-UTF-8 file name"])
def test_cli_refuses_with_one_line_before_any_work(name, tmp_path):
    case = CASES[name]
    dataset = case.build(str(tmp_path / "data"))
    before = bad_inputs.snapshot(tmp_path)
    flags = ("--network=vgg16", *case.flags) if "--network=" not in case.flags else case.flags
    completed = _cli(tmp_path, *flags, f"--dataset_dir={os.fsdecode(dataset)}", "--output_dir=out")
    errors = [line for line in completed.stderr.splitlines() if line.startswith("extract_features: error:")]
    assert completed.returncode == 1, completed.stderr
    assert len(errors) == 1 and re.search(case.match, errors[0]), completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
    assert bad_inputs.destroyed(before) == []
