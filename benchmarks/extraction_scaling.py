"""Memory and time of `extract_features` against dataset size: N, 4N and 16N images.

Writes a synthetic class-folder dataset of small JPEGs (default 10 classes, 32x32 sources: CIFAR-like) in a
temporary folder, with N, 4N and 16N images (default N=256; the smaller sets are hard links to part of the
largest), and runs the `extract_features` command with its defaults (engine and batch size chosen by the
device; `--network=vgg16 --input_size=32 --weights=none --precision=float32` unless told otherwise) on each, as a
subprocess, the way a user would. For each size it measures the wall time (start-up, decoding, the network,
checkpoints and the HDF5 merge included) and the command's peak RSS (`/usr/bin/time -f %M`, else a wrapper
that reads `RUSAGE_CHILDREN`).

A first, unreported run on the 1x set fills an empty model store (`BOTTLENECK_CACHE_HOME`, in the temporary
folder), so that every measured run loads the converted OpenVINO model as a user's later runs do; its time is
printed apart. The marginal rate between the two largest sets, (16N - 4N) / (t16 - t4), is the throughput
with start-up taken out.

Prints a Markdown table (images | wall s | images/s | peak RSS MiB | RSS vs 1x) and whether the issue's
target holds: peak memory at 16x within 10% of 1x. The precision is pinned to float32 because
`--precision=auto` measures the lower precisions (and loads NNCF, ~200 MiB once) only from 960 images on, so
1x and 16x would not run the same code (measured 2026-11-30, Zen 4: auto 381 / 604 / 605 MiB, float32
379 / 385 / 396 MiB); pass `--extra_flags=--precision=auto` to see it. About 2-4 minutes on 2 vCPUs.
Run from the repository root:

    .venv/bin/python benchmarks/extraction_scaling.py [--base_images=256] [--network=vgg16]
        [--input_size=32] [--repeats=1] [--keep]
"""

import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmarks import common  # pylint: disable=wrong-import-position

_BASE = flags.DEFINE_integer("base_images", 256, "N: images of the 1x dataset.", lower_bound=10)
_MULTIPLES = flags.DEFINE_list("multiples", ["1", "4", "16"], "Dataset sizes, in multiples of N.")
_NETWORK = flags.DEFINE_string("network", "vgg16", "Network (extract_features --network).")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 32, "extract_features --input_size.")
_SOURCE_SIZE = flags.DEFINE_integer("source_size", 32, "Side of the JPEGs written.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Class folders.", lower_bound=2)
_REPEATS = flags.DEFINE_integer("repeats", 1, "Runs per size (median wall time, max RSS).",
                                lower_bound=1)
_EXTRA = flags.DEFINE_list(
    "extra_flags", ["--precision=float32"], "More extract_features flags, e.g. --engine=keras "
    "(they replace the default --precision=float32).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the images.")
_KEEP = flags.DEFINE_boolean("keep", False, "Keep the temporary folder.")



def write_dataset(root, count, side, classes, seed):
    """Writes `count` smooth random JPEGs into `classes` folders; returns the paths, in order written."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    from PIL import Image  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c:02d}"), exist_ok=True)
    coarse = max(2, side // 8)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, size=(coarse, coarse, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((side, side), Image.BILINEAR)
        noise = rng.integers(-12, 13, size=(side, side, 3))
        pixels = np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)
        path = os.path.join(root, f"class_{i % classes:02d}", f"{i:06d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def link_subset(paths, source_root, root, count):
    """A dataset of the first `count` images of `paths`, as hard links."""
    for path in paths[:count]:
        target = os.path.join(root, os.path.relpath(path, source_root))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.link(path, target)




def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()
    multiples = sorted(int(m) for m in _MULTIPLES.value)
    sizes = [_BASE.value * m for m in multiples]
    scratch = tempfile.mkdtemp(prefix="bottleneck-scaling-bench-")
    env = {**os.environ, "BOTTLENECK_CACHE_HOME": os.path.join(scratch, "store"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    print(f"# extract_features scaling, {started:%Y-%m-%d %H:%M %Z}: {_NETWORK.value} "
          f"@{_INPUT_SIZE.value}, --weights=none, {_CLASSES.value} classes of "
          f"{_SOURCE_SIZE.value}x{_SOURCE_SIZE.value} JPEGs, {' '.join(_EXTRA.value) or 'default flags'}; "
          f"load average at start {load_start[0]:.2f}", flush=True)
    rows = []
    try:
        largest = os.path.join(scratch, f"data_{sizes[-1]}")
        paths = write_dataset(largest, sizes[-1], _SOURCE_SIZE.value, _CLASSES.value, _SEED.value)
        folders = {}
        for size in sizes:
            folders[size] = largest if size == sizes[-1] else os.path.join(scratch, f"data_{size}")
            if size != sizes[-1]:
                link_subset(paths, largest, folders[size], size)

        def command(size, output):
            return [sys.executable, "-m", "bottleneck_cache.bin.extract_features",
                    f"--network={_NETWORK.value}", "--weights=none", f"--input_size={_INPUT_SIZE.value}",
                    f"--dataset_dir={folders[size]}", f"--dataset=synthetic{size}",
                    f"--output_dir={output}", *_EXTRA.value]

        output = os.path.join(scratch, "out_first")
        first, first_rss, _ = common.timed_command(command(sizes[0], output), env, scratch)
        shutil.rmtree(output)
        print(f"first run ({sizes[0]} images, empty model store: conversion included): "
              f"{first:.1f} s, peak RSS {first_rss / 1024:.0f} MiB", flush=True)
        for size in sizes:
            runs = []
            for repeat in range(_REPEATS.value):
                output = os.path.join(scratch, f"out_{size}_{repeat}")
                seconds, rss, stdout = common.timed_command(command(size, output), env, scratch)
                rows_written = sum(int(n) for n in re.findall(r"\((\d+) samples", stdout))
                if rows_written != size:
                    raise SystemExit(f"expected {size} rows written, got {rows_written}:\n{stdout}")
                shutil.rmtree(output)
                runs.append((seconds, rss))
                print(f"{size} images: {seconds:.1f} s, peak RSS {rss / 1024:.0f} MiB", flush=True)
            rows.append((size, statistics.median(s for s, _ in runs), max(r for _, r in runs)))
    finally:
        if _KEEP.value:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    load_end = os.getloadavg()
    base_rss = rows[0][2]
    print()
    print("| images | wall s | images/s | peak RSS MiB | RSS vs 1x |")
    print("|---|---|---|---|---|")
    for size, seconds, rss in rows:
        print(f"| {size} ({size // _BASE.value}x) | {seconds:.1f} | {size / seconds:.0f} | "
              f"{rss / 1024:.0f} | {rss / base_rss:.3f} |")
    print()
    if len(rows) >= 2 and rows[-1][1] > rows[-2][1]:
        marginal = (rows[-1][0] - rows[-2][0]) / (rows[-1][1] - rows[-2][1])
        print(f"marginal rate between {rows[-2][0]} and {rows[-1][0]} images (start-up taken out): "
              f"{marginal:.0f} images/s")
    growth = rows[-1][2] / base_rss - 1
    print(f"peak memory at {multiples[-1]}x within 10% of 1x: {'met' if abs(growth) <= 0.10 else 'NOT met'} "
          f"({growth:+.1%})")
    finished = datetime.datetime.now().astimezone()
    model = "unknown"
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    print(f"Machine: {model}; os.cpu_count()={os.cpu_count()}; load average at start "
          f"{load_start[0]:.2f}, at end {load_end[0]:.2f}; {started:%Y-%m-%d %H:%M}–"
          f"{finished:%H:%M %Z} ({(finished - started).total_seconds() / 60:.1f} min).")


if __name__ == "__main__":
    app.run(main)
