"""How each head should scale its features: validation accuracy of the heads under each scaling, on real caches.

Every head stores a feature scaling (`mean`, `scale` in `head.npz`; predict and export apply it). This
benchmark trains softmax, mlp and logreg heads (feature_extraction's defaults) on every train/validation
pair of caches in --caches_dir under each candidate scaling, with several seeds, and prints the validation
accuracies side by side, with the previous version's Keras softmax head (raw features, `tf.data`, seed 0)
for reference. Scalings (per-feature `mean_j`, `var_j` from the training features):

- standardize: `(x - mean_j) / sqrt(var_j)` (scikit-learn's StandardScaler);
- center+global: `(x - mean_j) / sqrt(mean over j of var_j)`: centered, one scale for every feature, so
  features keep their relative magnitudes while the overall scale is fixed;
- floor: `(x - mean_j) / sqrt(var_j + mean over j of var_j)`: standardization with a variance floor;
- raw: the features as they are.

Extract the caches first (float32, so that the arithmetic is the network's), e.g. for MobileNetV2 (and
likewise `--network=mobilenet` with its weights file):

    extract_features --network=mobilenet_v2 --weights=<weights> --precision=float32 \\
        --dataset_dir=<data>/cifar10-mini --dataset=cifar10 --output_dir=<caches>
    ... --dataset_dir=<data>/cats-vs-dogs-mini --dataset=catsdogs
    ... --dataset_dir=<data>/mnist-t10k --dataset=mnist --per_class=100 --validation_split=0.1
    ... --dataset_dir=<data>/gtsrb-mini --dataset=gtsrb --per_class=50

then run it alone:

    flock /tmp/bench.lock python benchmarks/head_scaling.py --caches_dir=<caches> [--seeds=3]
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
from benchmarks import heads as heads_benchmark
from bottleneck_cache.classifiers import batch
from bottleneck_cache.classifiers import training
from bottleneck_cache.pipeline import cache

# pylint: enable=wrong-import-position

SCALINGS = ("standardize", "center+global", "floor", "raw")


def scaling(features, name):
    """`(mean, scale)`, two `(D,)` float32 arrays, of a scaling in `SCALINGS` from training features."""
    flat = np.asarray(features, np.float64).reshape(len(features), -1)
    mean, variance = flat.mean(axis=0), flat.var(axis=0)
    if name == "raw":
        mean, scale = np.zeros_like(mean), np.ones_like(mean)
    elif name == "center+global":
        scale = np.full_like(mean, np.sqrt(variance.mean()))
    elif name == "floor":
        scale = np.sqrt(variance + variance.mean())
    else:
        scale = np.sqrt(variance)
    scale[scale < 1e-12] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def scaled_pair(train, validation, name):
    mean, scale = scaling(train.features, name)
    flat = [np.asarray(c.features, np.float32).reshape(len(c.features), -1) for c in (train, validation)]
    return training.Standardized(mean, scale, *[(x - mean) / scale for x in flat])


def accuracies(train, validation, head, seeds, scaled):
    """Validation accuracy of a head (feature_extraction's defaults) for each seed."""
    found = []
    for seed in seeds if head != "logreg" else seeds[:1]:  # L-BFGS is deterministic.
        settings = training.HeadSettings(head=head, seed=seed).check()
        fitted = training.fit_heads(train, validation, [settings], scaled)[0]
        probabilities = fitted.saved.probabilities(validation.features)
        found.append(float(np.mean(probabilities.argmax(axis=1) == validation.labels)))
    return found


def keras_softmax(train_file, validation_file, scratch):
    """The previous version's Keras softmax head on raw features (benchmarks/heads.py), seed 0."""
    return heads_benchmark.run_script(heads_benchmark.KERAS_HEAD, train_file, validation_file, "softmax",
                                      scratch=scratch)["val_accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caches_dir", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--heads", default="softmax,mlp,logreg")
    parser.add_argument("--scratch", default="/tmp/head-scaling")
    parser.add_argument("--json", help="also write the accuracies to this file")
    args = parser.parse_args()
    os.makedirs(args.scratch, exist_ok=True)
    seeds, heads = list(range(args.seeds)), args.heads.split(",")
    print(f"date {time.strftime('%Y-%m-%d %H:%M')}, {heads_benchmark.cpu_description()}, "
          f"load {os.getloadavg()}; seeds {seeds}", flush=True)
    pairs = batch.pair_caches(sorted(glob.glob(os.path.join(args.caches_dir, "*_train.h5"))),
                              sorted(glob.glob(os.path.join(args.caches_dir, "*_validation.h5"))))
    found = {}
    print("\n| network | dataset | train x D | head | Keras softmax (raw, seed 0) | "
          + " | ".join(SCALINGS) + " |\n|---|---|---|---|---|" + "---|" * len(SCALINGS), flush=True)
    for train_file, validation_file in pairs:
        train, validation = cache.read_cache(train_file), cache.read_cache(validation_file)
        name = (train.metadata.network, train.metadata.dataset)
        reference = keras_softmax(train_file, validation_file, args.scratch) if "softmax" in heads else None
        for head in heads:
            cells = {s: accuracies(train, validation, head, seeds, scaled_pair(train, validation, s))
                     for s in SCALINGS}
            found[f"{name[0]} {name[1]} {head}"] = {"keras_softmax": reference, **cells}
            keras = f"{reference:.3f}" if head == "softmax" else ""
            print(f"| {name[0]} | {name[1]} | {len(train.labels)} x {train.features[0].size} | {head} | {keras} | "
                  + " | ".join(f"{np.mean(cells[s]):.3f}" for s in SCALINGS) + " |", flush=True)
    print("\nmean over the pairs, by head:")
    for head in heads:
        rows = [v for k, v in found.items() if k.endswith(f" {head}")]
        print(f"- {head}: " + ", ".join(f"{s} {np.mean([np.mean(r[s]) for r in rows]):.4f}" for s in SCALINGS))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(found, f, indent=1)
    print(f"\nload at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
