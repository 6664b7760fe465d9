"""Batch mode against separate runs: 3 networks x 2 datasets x 3 heads, in one run of this script.

Extracts (or reuses) caches of the CIFAR-10 and GTSRB subsets in --data_dir (cifar10-mini/: CIFAR-10
JPEGs, train/<class>/ and val/<class>/ with 100 per class each; gtsrb-mini/: GTSRB in its official
Final_Training/ and Final_Test/ layout) with MobileNetV2 and MobileNet (their ImageNet weights from
--weights_dir, Keras' files mobilenet_v2_1.00_224_no_top.weights.h5 and
mobilenet_1_0_224_tf_no_top.weights.h5) and MobileNetV3Small (random weights, seeded: no ImageNet weights
file for it is at hand; it is there for the timing), then trains the 18 heads twice: as 18 separate
`feature_extraction` processes (the baseline), and as one batch
`feature_extraction --training_file=GLOB --validation_file=GLOB --head=softmax,mlp,logreg`. Prints the wall
times, the speed-up, and the batch's results table.

    python benchmarks/batch_jobs.py [--data_dir DATA] [--weights_dir WEIGHTS]
        [--workdir /tmp/bottleneck-batch] [--input_size 96]
"""

import argparse
import glob
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import common  # pylint: disable=wrong-import-position
from bottleneck_cache.classifiers import batch  # pylint: disable=wrong-import-position
from bottleneck_cache.pipeline import cache  # pylint: disable=wrong-import-position

# Networks, and whether they run with their ImageNet weights file (else seeded random weights).
NETWORKS = (("mobilenet_v2", True), ("mobilenet", True), ("mobilenet_v3_small", False))
DATASETS = (("cifar10", "cifar10-mini"), ("gtsrb", "gtsrb-mini"))
HEADS = ("softmax", "mlp", "logreg")


def _command(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def _run(arguments):
    started = time.perf_counter()
    result = subprocess.run(arguments, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"failed: {' '.join(arguments)}\n{result.stderr[-2000:]}")
    return time.perf_counter() - started, result.stdout


def extract_all(caches, input_size, folders, weights_of):
    """Extracts (or reuses) every network x dataset cache; returns the seconds spent."""
    total = 0.0
    for network, _ in NETWORKS:
        weights = weights_of[network]
        for dataset, folder in DATASETS:
            seconds, _ = _run([_command("extract_features"), f"--network={network}",
                               f"--dataset_dir={folders[folder]}",
                               f"--dataset={dataset}", f"--weights={weights}",
                               f"--input_size={input_size}", f"--output_dir={caches}"])
            print(f"  extract {network} {dataset}: {seconds:.1f} s", flush=True)
            total += seconds
    return total


def separate_runs(caches, runs):
    """The baseline: one `feature_extraction` process per job."""
    started = time.perf_counter()
    pairs = batch.pair_caches(sorted(glob.glob(os.path.join(caches, "*_train.h5"))),
                              sorted(glob.glob(os.path.join(caches, "*_validation.h5"))))
    for train, validation in pairs:
        for head in HEADS:
            name = cache.run_name(train)
            _run([_command("feature_extraction"), f"--training_file={train}",
                  f"--validation_file={validation}", f"--head={head}",
                  f"--output_dir={os.path.join(runs, f'{name}_{head}')}"])
    return time.perf_counter() - started


def batch_run(caches, runs):
    """One `feature_extraction` process for all 18 jobs."""
    seconds, stdout = _run([_command("feature_extraction"),
                            f"--training_file={os.path.join(caches, '*_train.h5')}",
                            f"--validation_file={os.path.join(caches, '*_validation.h5')}",
                            f"--head={','.join(HEADS)}", f"--output_dir={runs}"])
    return seconds, stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=common.DATA_DIR, help=(
        "folder holding " + "; ".join(f"{folder}/: {common.DATASETS[folder]}" for _, folder in DATASETS)
        + " (default: a data/ folder beside the checkout)"))
    parser.add_argument("--weights_dir", default=common.WEIGHTS_DIR, help=(
        "folder of Keras ImageNet weights files, by their Keras file names: "
        + ", ".join(common.WEIGHTS_FILES[network, False] for network, real in NETWORKS if real)
        + " (default: a weights/ folder beside the checkout)"))
    parser.add_argument("--workdir", default="/tmp/bottleneck-batch")
    parser.add_argument("--input_size", type=int, default=96,
                        help="image side for extraction (smaller is faster; 224 is the networks' own)")
    args = parser.parse_args()
    try:
        folders = {folder: common.dataset_folder(args.data_dir, folder) for _, folder in DATASETS}
    except ValueError as error:
        raise SystemExit(str(error)) from None
    weights_of = {network: common.weights_file(network, args.weights_dir) if real else "none"
                  for network, real in NETWORKS}
    for network, path in weights_of.items():
        if path is None:
            raise SystemExit(
                f"Expected {common.WEIGHTS_FILES[network, False]} (the Keras ImageNet weights of {network}) "
                f"in --weights_dir. Received: not in {os.path.abspath(args.weights_dir)}. Pass "
                "--weights_dir=<folder holding it>.")
    caches = os.path.join(args.workdir, "caches")
    print(f"extracting {len(NETWORKS)} networks x {len(DATASETS)} datasets (input {args.input_size})")
    extraction = extract_all(caches, args.input_size, folders, weights_of)
    separate = separate_runs(caches, os.path.join(args.workdir, "separate"))
    batch, stdout = batch_run(caches, os.path.join(args.workdir, "batch"))
    jobs = len(NETWORKS) * len(DATASETS) * len(HEADS)
    print("\n| mode | jobs | wall time (s) | per job (s) |\n|---|---|---|---|")
    print(f"| {jobs} separate feature_extraction runs (baseline) | {jobs} | {separate:.1f} | "
          f"{separate / jobs:.2f} |")
    print(f"| one batch feature_extraction run | {jobs} | {batch:.1f} | {batch / jobs:.2f} |")
    print(f"\nspeed-up of the batch: {separate / batch:.2f}x (extraction beforehand: {extraction:.1f} s)")
    print("\n" + stdout)


if __name__ == "__main__":
    main()
