"""Never lose work: resuming after a kill, sharding and merging, and readers in parallel."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bottleneck_cache.features import extraction
from bottleneck_cache.pipeline import cache

OPTIONS = dict(network="vgg16", weights="none", input_size=32, batch_size=2, checkpoint_every=4)


def extract(folder_dataset, output_dir, **kwargs):
    return extraction.extract_features(
        dataset_dir=folder_dataset, output_dir=str(output_dir), **{**OPTIONS, **kwargs})


def assert_same_caches(results, expected):
    for a, b in zip(results, expected):
        x, y = cache.read_cache(a.path), cache.read_cache(b.path)
        np.testing.assert_array_equal(x.features, y.features)
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.filenames == y.filenames and x.skipped == y.skipped
        assert x.fingerprint == y.fingerprint


def test_random_weights_are_seeded(folder_dataset, tmp_path):
    assert_same_caches(extract(folder_dataset, tmp_path / "a"), extract(folder_dataset, tmp_path / "b"))


def test_interrupted_run_resumes_where_it_stopped(folder_dataset, tmp_path, monkeypatch):
    reference = extract(folder_dataset, tmp_path / "reference")
    calls = []
    original = extraction._extract_samples

    def dies_on_third_part(*args, **kwargs):
        calls.append(args[3:5])  # (start, stop)
        if calls == [(0, 4), (4, 8), (8, 12)]:
            raise SystemExit(143)  # what SIGTERM does (bin/cli.py)
        return original(*args, **kwargs)

    monkeypatch.setattr(extraction, "_extract_samples", dies_on_third_part)
    output = tmp_path / "out"
    with pytest.raises(SystemExit):
        extract(folder_dataset, output)
    (parts,) = [p for p in os.listdir(output) if p.endswith(".parts")]
    assert sorted(os.listdir(output / parts)) == ["part-0000000000-0000000004.h5",
                                                  "part-0000000004-0000000008.h5"]
    with pytest.raises(cache.CacheError, match="is not finished: its extraction is running or was "
                       "interrupted. Run the same extract_features command again to resume it"):
        cache.read_cache(str(output / "vgg16_shapes_bottleneck_features_train.h5"))

    calls.clear()
    results = extract(folder_dataset, output)
    assert calls[0] == (8, 12)  # the finished parts were not extracted again
    assert_same_caches(results, reference)
    assert sorted(os.listdir(output)) == sorted(os.path.basename(r.path) for r in results)


def test_damaged_part_is_extracted_again(folder_dataset, tmp_path, monkeypatch):
    reference = extract(folder_dataset, tmp_path / "reference")
    output = tmp_path / "out"
    monkeypatch.setattr(extraction, "_extract_samples", _fail_after(extraction._extract_samples, 2))
    with pytest.raises(SystemExit):
        extract(folder_dataset, output)
    monkeypatch.undo()
    (parts,) = [p for p in os.listdir(output) if p.endswith(".parts")]
    with open(output / parts / "part-0000000000-0000000004.h5", "r+b") as f:
        f.truncate(100)
    assert_same_caches(extract(folder_dataset, output), reference)


def _fail_after(function, calls):
    count = []

    def wrapper(*args, **kwargs):
        count.append(1)
        if len(count) > calls:
            raise SystemExit(143)
        return function(*args, **kwargs)

    return wrapper


def test_shards_merge_into_the_unsharded_cache(folder_dataset, tmp_path):
    reference = extract(folder_dataset, tmp_path / "reference")
    output = tmp_path / "sharded"
    shards = [extract(folder_dataset, output, num_shards=3, shard_index=i) for i in range(3)]
    assert [os.path.basename(r.path) for r in shards[1]] == [
        "vgg16_shapes_bottleneck_features_train-00001-of-00003.h5",
        "vgg16_shapes_bottleneck_features_validation-00001-of-00003.h5"]
    assert sum(s[0].num_samples for s in shards) == 12
    merged = extract(folder_dataset, output, num_shards=3, merge=True)
    assert_same_caches(merged, reference)


@pytest.mark.parametrize("num_shards", [2, 5, 12, 13])
def test_shards_of_a_small_split_merge_into_the_unsharded_cache(folder_dataset, tmp_path, num_shards):
    # Splits smaller than num_shards x the default checkpoint (1024): every shard gets its share,
    # every shard file is a part (an empty one too, with more shards than samples), and the merge
    # equals an unsharded run.
    options = dict(checkpoint_every=1024, batch_size=4)
    reference = extract(folder_dataset, tmp_path / "reference", **options)
    output = tmp_path / "sharded"
    shards = [extract(folder_dataset, output, num_shards=num_shards, shard_index=i, **options)
              for i in range(num_shards)]
    counts = [s[0].num_samples for s in shards]
    assert sum(counts) == 12 and max(counts) - min(counts) <= 4
    for split in range(2):  # Each split's shard files are parts that tile it, in shard order.
        ranges = [cache.read_part_header(s[split].path)[1] for s in shards]
        assert [r[0] for r in ranges[1:]] == [r[1] for r in ranges[:-1]]
        assert ranges[0][0] == 0 and ranges[-1][1] == ranges[-1][2] == (12, 6)[split]
    merged = extract(folder_dataset, output, num_shards=num_shards, merge=True, **options)
    assert_same_caches(merged, reference)


def test_merge_refuses_missing_and_mismatched_shards(folder_dataset, tmp_path):
    output = tmp_path / "sharded"
    for i in (0, 2):
        extract(folder_dataset, output, num_shards=3, shard_index=i)
    with pytest.raises(cache.CacheError, match=r"Expected 3 shard files of .*train.h5. Missing: "
                       r".*train-00001-of-00003.h5. Run those shards"):
        extract(folder_dataset, output, num_shards=3, merge=True)
    # A shard made with other settings, under the right name.
    extract(folder_dataset, tmp_path / "other", num_shards=3, shard_index=1, pooling="max")
    for name in os.listdir(tmp_path / "other"):
        os.replace(tmp_path / "other" / name, output / name)
    with pytest.raises(cache.CacheError, match=r"train-00001-of-00003.h5 was made with other settings "
                       r"\(pooling: 'max' != 'avg' \(part != expected\)\)"):
        extract(folder_dataset, output, num_shards=3, merge=True)


def test_merge_refuses_gaps_and_overlaps(folder_dataset, tmp_path):
    output = tmp_path / "parts"
    first = extract(folder_dataset, output / "a", num_shards=2, shard_index=0)[0].path
    second = extract(folder_dataset, output / "b", num_shards=2, shard_index=1)[0].path
    metadata, _ = cache.read_metadata(first)
    # 12 samples in batches of 2: the first shard has [0, 6), the second [6, 12).
    with pytest.raises(cache.CacheError, match=r"samples \[0, 6\) appear twice"):
        cache.merge_parts([first, first, second], str(tmp_path / "x.h5"), metadata, (0, 12, 12))
    with pytest.raises(cache.CacheError, match=r"parts end at sample 6, so samples \[6, 12\) are missing"):
        cache.merge_parts([first], str(tmp_path / "x.h5"), metadata, (0, 12, 12))
    with pytest.raises(cache.CacheError, match=r"starts at sample 6, so samples \[0, 6\) are missing"):
        cache.merge_parts([second], str(tmp_path / "x.h5"), metadata, (0, 12, 12))
    assert not os.path.exists(tmp_path / "x.h5")


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_shards=2, shard_index=2), r"Expected 0 <= shard_index < num_shards. Received: shard_index=2"),
    (dict(merge=True), r"Expected --num_shards >= 2 with --merge"),
    (dict(checkpoint_every=0), r"Expected checkpoint_every >= 1. Received: checkpoint_every=0"),
])
def test_bad_shard_options(folder_dataset, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        extract(folder_dataset, tmp_path, **kwargs)


def _read_labels(path):
    return cache.read_cache(path).labels.sum()


def test_readers_in_parallel(folder_dataset, tmp_path):
    path = extract(folder_dataset, tmp_path)[0].path
    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        sums = list(pool.map(_read_labels, [path] * 8))
    assert len(set(sums)) == 1


@pytest.mark.slow
def test_sigkill_then_resume(folder_dataset, tmp_path):
    """A real SIGKILL in the middle of an extraction, then the same command again."""
    reference = extract(folder_dataset, tmp_path / "reference", checkpoint_every=2, batch_size=1)
    output = tmp_path / "killed"
    command = [os.path.join(os.path.dirname(sys.executable), "extract_features"), "--network=vgg16",
               "--weights=none", "--input_size=32", "--batch_size=1", "--checkpoint_every=2",
               f"--dataset_dir={folder_dataset}", f"--output_dir={output}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        parts = [p for p in os.listdir(output) if p.endswith(".parts")] if output.exists() else []
        if parts and len(os.listdir(output / parts[0])) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "vgg16_shapes_bottleneck_features_train.h5").exists()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert_same_caches(extract(folder_dataset, output, checkpoint_every=2, batch_size=1), reference)


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_every", [4, 1024])  # 1024: a split smaller than 2 checkpoints
def test_ray_executor_matches_a_local_run(folder_dataset, tmp_path, checkpoint_every):
    pytest.importorskip("ray")
    reference = extract(folder_dataset, tmp_path / "reference", checkpoint_every=checkpoint_every)
    results = extract(folder_dataset, tmp_path / "ray", executor="ray", num_shards=2,
                      checkpoint_every=checkpoint_every)
    assert_same_caches(results, reference)
    shards = [f"vgg16_shapes_bottleneck_features_{split}-{i:05d}-of-00002.h5"
              for split in ("train", "validation") for i in range(2)]
    assert sorted(os.listdir(tmp_path / "ray")) == sorted(
        [os.path.basename(r.path) for r in results] + shards)
    # Run again: the merged caches are reused.
    assert [r.reused for r in extract(folder_dataset, tmp_path / "ray", executor="ray",
                                      checkpoint_every=checkpoint_every)] == [True, True]


def test_bad_executor(folder_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"Expected executor to be one of \('local', 'ray'\). "
                       r"Received: executor='slurm'"):
        extract(folder_dataset, tmp_path, executor="slurm")


def test_checkpoints_of_other_settings_are_kept_and_pointed_out(folder_dataset, tmp_path,
                                                                monkeypatch, caplog):
    output = tmp_path / "out"
    monkeypatch.setattr(extraction, "_extract_samples", _fail_after(extraction._extract_samples, 1))
    with pytest.raises(SystemExit):
        extract(folder_dataset, output, pooling="max")
    monkeypatch.undo()
    (other,) = [p for p in os.listdir(output) if p.endswith(".parts")]
    results = extract(folder_dataset, output)
    assert sorted(os.listdir(output)) == sorted([other] + [os.path.basename(r.path) for r in results])
    assert f"Kept {output / other}: checkpoints of an unfinished extraction" in caplog.text


def test_checkpoints_left_by_a_kill_after_the_merge_are_removed(folder_dataset, tmp_path, monkeypatch):
    output = tmp_path / "out"

    def killed(path, fingerprint):
        raise SystemExit(137)

    monkeypatch.setattr(extraction, "_tidy_parts_folders", killed)
    with pytest.raises(SystemExit):
        extract(folder_dataset, output)
    monkeypatch.undo()
    assert any(p.endswith(".parts") for p in os.listdir(output))
    results = extract(folder_dataset, output)
    assert results[0].reused
    assert sorted(os.listdir(output)) == sorted(os.path.basename(r.path) for r in results)
