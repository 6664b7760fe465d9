"""What a lower precision does to the features and to head accuracy, with real ImageNet weights.

For MobileNetV2 and MobileNet (weights from ../shared/weights) on the CIFAR-10 subset of ../shared/data
(100 training and 100 validation images per class), extracts the features in float32 and in bfloat16 with
the same engine, then prints per precision: the features' agreement with float32 (lowest cosine similarity
and largest relative L2 error over the rows) and the validation accuracy of a softmax and a logreg head
trained on them, with the difference in points. `--precision=auto` may pick a precision only if this
difference stays within 0.5 points.

    python benchmarks/precision.py [--engine keras] [--precisions bfloat16] [--workdir /tmp/precision]
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared")
NETWORKS = (
    ("mobilenet_v2", os.path.join(SHARED, "weights", "mobilenet_v2_1.00_224_no_top.weights.h5")),
    ("mobilenet", os.path.join(SHARED, "weights", "mobilenet_1_0_224_tf_no_top.weights.h5")),
)
HEADS = ("softmax", "logreg")

from classifiers import training  # pylint: disable=wrong-import-position
from features import engines  # pylint: disable=wrong-import-position
from features import extraction  # pylint: disable=wrong-import-position
from pipeline import cache  # pylint: disable=wrong-import-position


def agreement(features, reference):
    """Per-row cosine similarities and relative L2 errors of matching rows, `(cosine, error)`."""
    a, b = features.reshape(len(features), -1), reference.reshape(len(reference), -1)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    error = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    return cosine, error


def extract(network, weights, dataset_dir, folder, engine, precision):
    started = time.perf_counter()
    results = extraction.extract_features(
        network, dataset_dir=dataset_dir, dataset="cifar10", output_dir=folder, weights=weights,
        engine=engine, precision=precision)
    return [r.path for r in results], time.perf_counter() - started


def heads(paths, folder):
    accuracies = {}
    for head in HEADS:
        metrics = training.train_head(*paths, head=head, output_dir=os.path.join(folder, head))
        accuracies[head] = metrics["val_accuracy"]
    return accuracies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="keras", choices=engines.ENGINES[1:])
    parser.add_argument("--precisions", default="bfloat16")
    parser.add_argument("--dataset_dir", default=os.path.join(SHARED, "data", "cifar10-mini"))
    parser.add_argument("--workdir", default="/tmp/bottleneck-precision")
    args = parser.parse_args()
    if not os.path.isdir(args.dataset_dir):
        raise SystemExit(f"Expected the CIFAR-10 subset at {args.dataset_dir}; pass --dataset_dir.")
    device = engines.detect_device()
    print(f"date {time.strftime('%Y-%m-%d')}, {device.description}, engine {args.engine}")
    rows = []
    for network, weights in NETWORKS:
        reference_paths, reference_time = extract(network, weights, args.dataset_dir, os.path.join(
            args.workdir, network, "float32"), args.engine, "float32")
        reference = [cache.read_cache(path) for path in reference_paths]
        reference_accuracy = heads(reference_paths, os.path.join(args.workdir, network, "heads-float32"))
        rows.append((network, "float32", (1.0, 1.0), (0.0, 0.0), reference_time,
                     reference_accuracy, reference_accuracy))
        for precision in args.precisions.split(","):
            paths, seconds = extract(network, weights, args.dataset_dir, os.path.join(
                args.workdir, network, precision), args.engine, precision)
            caches = [cache.read_cache(path) for path in paths]
            pairs = []
            for mine, theirs in zip(caches, reference):
                assert mine.filenames == theirs.filenames
                pairs.append(agreement(mine.features, theirs.features))
            cosine, error = (np.concatenate(values) for values in zip(*pairs))
            accuracy = heads(paths, os.path.join(args.workdir, network, f"heads-{precision}"))
            rows.append((network, precision, (np.median(cosine), cosine.min()),
                         (np.median(error), error.max()), seconds, accuracy, reference_accuracy))
    print("\n| network | precision | cosine: median / min | rel. L2 error: median / max | "
          "extraction s | "
          + " | ".join(f"{h} val acc (Δ points)" for h in HEADS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(HEADS))
    for network, precision, cosine, error, seconds, accuracy, reference_accuracy in rows:
        cells = [f"{accuracy[h]:.3f} ({100 * (accuracy[h] - reference_accuracy[h]):+.1f})"
                 for h in HEADS]
        print(f"| {network} | {precision} | {cosine[0]:.5f} / {cosine[1]:.5f} | "
              f"{error[0]:.4f} / {error[1]:.4f} | {seconds:.0f} | "
              + " | ".join(cells) + " |")
    worst = max(abs(100 * (a[h] - r[h])) for *_, a, r in rows for h in HEADS)
    print(f"\nlargest accuracy change: {worst:.1f} points "
          f"({'within' if worst <= 0.5 else 'NOT within'} the 0.5-point bound for auto)")


if __name__ == "__main__":
    main()
