"""Stage-two speed: a head on 1,000 x 512 features for 50 epochs, against the tutorial's `fit`, in one run.

Writes a synthetic pair of caches (1,000 training and 250 validation rows of 512 features, 10 classes,
class-dependent means so the head has something to learn), then, each in a fresh process:

- baseline: `model.fit(x, y, validation_data=(x_val, y_val), batch_size=256, epochs=50)` on NumPy
  arrays (the tutorials' way), with the same softmax head and optimizer;
- ours: `feature_extraction --head=softmax --epochs=50` (the library's `train_head`).

Prints, for each, the CPU seconds of training (tracing included) and of everything before it (start-up:
interpreter, imports, reading), wall seconds of the whole process, and the validation accuracy; then the
wall time of `--help` of every command (imports are lazy, so it should be instant).

    python benchmarks/heads.py [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline import cache  # pylint: disable=wrong-import-position

_BASELINE = """
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from pipeline import cache
import keras
train, validation = cache.read_cache(sys.argv[1]), cache.read_cache(sys.argv[2])
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
startup = time.process_time()
history = model.fit(train.features, train.labels, batch_size=256, epochs=50, shuffle=True,
                    validation_data=(validation.features, validation.labels), verbose=0)
print(json.dumps({"fit_cpu_seconds": time.process_time() - startup, "startup_cpu_seconds": startup,
                  "val_accuracy": history.history["val_accuracy"][-1]}))
"""
COMMANDS = ("extract_features", "feature_extraction", "predict", "export_model")


def _metadata(split):
    return cache.CacheMetadata(
        network="synthetic", weights="none", weights_sha256="", layer="", pooling="avg",
        input_size=(32, 32), preprocessing="synthetic", dataset="synthetic",
        dataset_digest=split, split=split, per_class=0, seed=0, library_versions="{}")


def write_caches(folder, rows=1000, validation_rows=250, dim=512, classes=10):
    """Writes a train/validation pair of synthetic caches; returns their paths."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(classes, dim)).astype(np.float32)
    paths = []
    for split, count, offset in (("train", rows, 0), ("validation", validation_rows, rows)):
        labels = rng.integers(0, classes, count)
        features = means[labels] + 3 * rng.normal(size=(count, dim)).astype(np.float32)
        path = os.path.join(folder, f"synthetic_{split}.h5")
        with cache.CacheWriter(path, _metadata(split), [f"c{i}" for i in range(classes)],
                               (dim,)) as writer:
            writer.append(features, labels, [f"{offset + i}.png" for i in range(count)])
            writer.commit()
        paths.append(path)
    return paths


def _timed(arguments, codes=(0,)):
    started = time.perf_counter()
    done = subprocess.run(arguments, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode not in codes:
        raise SystemExit(f"failed: {' '.join(arguments)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def baseline(train, validation):
    wall, out = _timed([sys.executable, "-c", _BASELINE, train, validation])
    return {**json.loads(out.strip().splitlines()[-1]), "wall": wall}


def ours(train, validation, output_dir):
    wall, _ = _timed([sys.executable, "-m", "bin.feature_extraction", f"--training_file={train}",
                      f"--validation_file={validation}", "--head=softmax", "--epochs=50",
                      f"--output_dir={output_dir}"])
    with open(os.path.join(output_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {**metrics, "wall": wall}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"date {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        train, validation = write_caches(folder)
        runs = {"baseline: keras fit on NumPy arrays": [], "ours: feature_extraction": []}
        for i in range(args.repeats):
            runs["baseline: keras fit on NumPy arrays"].append(baseline(train, validation))
            runs["ours: feature_extraction"].append(ours(train, validation,
                                                         os.path.join(folder, f"head{i}")))
    print("\n| 1000 x 512, softmax, 50 epochs | training CPU s | start-up CPU s | process wall s | "
          "val acc |\n|---|---|---|---|---|")
    medians = {}
    for name, results in runs.items():
        row = [statistics.median(result[key] for result in results)
               for key in ("fit_cpu_seconds", "startup_cpu_seconds", "wall", "val_accuracy")]
        medians[name] = row[0]
        print(f"| {name} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} | {row[3]:.3f} |")
    base, mine = medians.values()
    print(f"\ntraining compute: {base / mine:.1f}x less than the baseline; "
          f"under one second: {'yes' if mine < 1.0 else 'no'} ({mine:.2f} s CPU, median of "
          f"{args.repeats})")
    print("\n| command | `--help` wall s |\n|---|---|")
    for command in COMMANDS:
        # absl ends --help with exit status 1.
        wall = statistics.median(_timed([sys.executable, "-m", f"bin.{command}", "--help"], (0, 1))[0]
                                 for _ in range(args.repeats))
        print(f"| {command} | {wall:.2f} |")
    print(f"\nload at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
