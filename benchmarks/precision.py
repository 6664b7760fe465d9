"""What each lower precision does to features and head accuracy, with real ImageNet weights; what auto picks.

For MobileNetV2 and MobileNet (ImageNet weights from --weights_dir, Keras' files
mobilenet_v2_1.00_224_no_top.weights.h5 and mobilenet_1_0_224_tf_no_top.weights.h5) on the CIFAR-10 subset
cifar10-mini/ in --data_dir (JPEGs of CIFAR-10, Krizhevsky 2009: train/<class>/ and val/<class>/, 100 training
and 100 validation images per class), extracts the features with OpenVINO in float32,
bfloat16 and int8 (NNCF, calibrated on --calibration_images training images), then prints per precision:

- fidelity on the sample `--precision=auto` checks (`--check_images` validation images; what the cache
  records): per-image cosine similarity to float32, median / 1st percentile / minimum;
- the same over every validation image;
- the validation accuracy of a softmax and a logreg head trained on the features, and its change from
  float32 in points (paired: same images, same head seeds);
- whether the precision passes `features.precision.GATE`, and whether it keeps both heads within 1 point.

Then runs `--precision=auto` and prints what it chose and why. The gate is sound on these networks when
every precision that passes it keeps both heads within 1 point (printed as the last line). A network needs
its Keras weights file in --weights_dir (random weights would make the fidelity and accuracy meaningless).

    flock /tmp/bench.lock .venv/bin/python benchmarks/precision.py [--networks=mobilenet_v2,mobilenet]
        [--precisions=bfloat16,int8] [--workdir=/tmp/bottleneck-precision]
"""

import argparse
import logging
import os
import sys
import time

import numpy as np
from absl import logging as absl_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
HEADS = ("softmax", "logreg")
ACCURACY_BOUND = 1.0  # points

from benchmarks import common  # pylint: disable=wrong-import-position
from bottleneck_cache.classifiers import training  # pylint: disable=wrong-import-position
from bottleneck_cache.features import engines  # pylint: disable=wrong-import-position
from bottleneck_cache.features import extraction  # pylint: disable=wrong-import-position
from bottleneck_cache.features import precision as precisions  # pylint: disable=wrong-import-position
from bottleneck_cache.pipeline import cache  # pylint: disable=wrong-import-position


class _AutoLine(logging.Handler):
    """Prints the line `--precision=auto` logs about its choice."""

    def emit(self, record):
        if record.getMessage().startswith("precision auto"):
            print(f"  {record.getMessage()}", flush=True)


def extract(network, weights, args, precision):
    folder = os.path.join(args.workdir, network, precision)
    started = time.perf_counter()
    results = extraction.extract_features(
        network, dataset_dir=args.data_dir, dataset="cifar10", output_dir=folder, weights=weights,
        engine="openvino", precision=precision, calibration_images=args.calibration_images,
        check_images=args.check_images, overwrite=True)
    return [r.path for r in results], time.perf_counter() - started


def heads(paths, folder):
    return {head: training.train_head(*paths, head=head, output_dir=os.path.join(folder, head))
            ["val_accuracy"] for head in HEADS}


def measure(network, weights, args):
    """Rows `(precision, sample fidelity, whole fidelity, seconds, accuracy)` of one network."""
    rows, reference = [], None
    for precision in ("float32", *args.precisions.split(",")):
        paths, seconds = extract(network, weights, args, precision)
        sample = precisions.Fidelity.from_attrs(cache.read_fidelity(paths[1]))
        validation = cache.read_cache(paths[1])
        if reference is None:
            reference = validation
        assert validation.filenames == reference.filenames
        whole = (precisions.EXACT if precision == "float32" else
                 precisions.measure_fidelity(validation.features, reference.features))
        accuracy = heads(paths, os.path.join(args.workdir, network, f"heads-{precision}"))
        rows.append((precision, sample, whole, seconds, accuracy))
        print(f"  {network} {precision}: {seconds:.0f} s, {sample.describe()}, "
              f"{accuracy}", flush=True)
    return rows


def show(value):
    return "exact" if value.exact else f"{value.median:.5f} / {value.p1:.5f} / {value.minimum:.5f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="mobilenet_v2,mobilenet")
    parser.add_argument("--precisions", default="bfloat16,int8")
    parser.add_argument("--data_dir", default=common.DATA_DIR, help=(
        "folder holding cifar10-mini/ (or that folder itself): "
        f"{common.DATASETS['cifar10-mini']} (default: a data/ folder beside the checkout)"))
    parser.add_argument("--weights_dir", default=common.WEIGHTS_DIR, help=(
        "folder of Keras ImageNet weights files, by their Keras file names: "
        + ", ".join(f"{name} ({network})" for (network, top), name in common.WEIGHTS_FILES.items()
                    if not top) + " (default: a weights/ folder beside the checkout)"))
    parser.add_argument("--calibration_images", type=int, default=precisions.CALIBRATION_IMAGES)
    parser.add_argument("--check_images", type=int, default=precisions.CHECK_IMAGES)
    parser.add_argument("--workdir", default="/tmp/bottleneck-precision")
    args = parser.parse_args()
    absl_logging.get_absl_logger().addHandler(_AutoLine())
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        args.data_dir = common.dataset_folder(args.data_dir, "cifar10-mini")
    except ValueError as error:
        raise SystemExit(str(error)) from None
    weights_of = {}
    for network in args.networks.split(","):
        weights_of[network] = common.weights_file(network, args.weights_dir)
        if weights_of[network] is None:
            raise SystemExit(
                f"Expected the Keras ImageNet weights file of {network} in --weights_dir "
                f"({common.WEIGHTS_FILES.get((network, False), 'none is known for this network')}). "
                f"Received: not in {os.path.abspath(args.weights_dir)}. Pass --weights_dir=<folder "
                "holding it>, or --networks without it.")
    flags = engines.cpu_flags()
    print(f"date {time.strftime('%Y-%m-%d %H:%M')}, {engines.cpu_name()}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.2f}, flags {' '.join(sorted(set(flags) & {*precisions.BF16_FLAGS, *precisions.INT8_FLAGS, 'avx512f'}))}")
    table, sound, admitted, rejected_within = [], True, 0, 0
    for network in args.networks.split(","):
        weights = weights_of[network]
        rows = measure(network, weights, args)
        base = rows[0][4]
        for precision, sample, whole, seconds, accuracy in rows:
            change = {h: 100 * (accuracy[h] - base[h]) for h in HEADS}
            within = all(abs(v) <= ACCURACY_BOUND for v in change.values())
            passes = precisions.GATE.passes(sample)
            sound &= within or not passes
            admitted += passes and precision != "float32"
            rejected_within += within and not passes
            table.append((network, precision, show(sample), show(whole), seconds,
                          " | ".join(f"{accuracy[h]:.3f} ({change[h]:+.1f})" for h in HEADS),
                          "yes" if passes else "no", "yes" if within else "no"))
        paths, seconds = extract(network, weights, args, "auto")
        chosen = cache.read_metadata(paths[0])[0].precision
        table.append((network, f"auto -> {chosen}", "", "", seconds, f"= {chosen} | = {chosen}", "", ""))
    print(f"\n| network | precision | cosine on the {args.check_images}-image check: median / 1st pct / "
          "min | cosine, all validation images | extraction s | "
          + " | ".join(f"{h} val acc (Δ points)" for h in HEADS) + " | passes gate | within 1 point |")
    print("|---|---|---|---|---|" + "---|" * len(HEADS) + "---|---|")
    for row in table:
        print("| " + " | ".join(str(v) if not isinstance(v, float) else f"{v:.0f}" for v in row)
              + " |")
    print(f"\ngate: {precisions.GATE.describe()}; "
          f"{'sound' if sound else 'NOT sound'} here: every precision that passes it keeps both heads "
          f"within {ACCURACY_BOUND:g} point{'' if sound else ' (violated)'}; lower precisions it "
          f"admitted: {admitted}; rejected although within {ACCURACY_BOUND:g} point: {rejected_within}")


if __name__ == "__main__":
    main()
