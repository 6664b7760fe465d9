"""Extraction speed: the tutorial way (Keras float32 `predict`, batch 32) against our default path.

For each network @ input size (default VGG16@224, ResNet50@224, InceptionV3@299, VGG16@32), with random
seeded weights (FLOPs and speed do not depend on the weight values), on the same random uint8 images held in
memory and passed through the network's own `preprocess_input`:

- naive: `model.predict(images, batch_size=32)` in float32 on the Keras engine;
- ours: what a user gets by default, `features.engines.create_engine(resolve_engine("auto"),
  resolve_precision("auto"), device, ...)` with `auto_batch_size` (OpenVINO when installed, bfloat16 only on
  CPUs with AMX or AVX512-BF16).

Each configuration runs in its own subprocess, so its peak RSS (`ru_maxrss` of that process) is its own. Only
the model calls are timed, after one warm-up batch; `--repeats` timings, median reported. The converted
OpenVINO model is made once beforehand in another subprocess (its time is shown separately), so the measured
process loads it as any later run would. Both write their features; agreement is the minimum cosine
similarity and the maximum relative L2 error of our rows against the naive ones.

Also measured once: the f32 and bf16 `tf.matmul` peak of this machine (GFLOP/s; "% of peak" is against the
bf16 one, as the issue asks), and each network's FLOPs per image with TensorFlow's profiler on its frozen
concrete function (a multiply-add counts 2).

Then the whole process: a synthetic class-folder JPEG dataset, and the `extract_features` command run as a
subprocess (start-up, decoding, HDF5 writing included) with `--engine=keras --precision=float32
--batch_size=32` against the defaults; wall time and the child's peak RSS (`/usr/bin/time -f %M`, else a
wrapper reading `RUSAGE_CHILDREN`). The default is run once with an empty OpenVINO model store (a user's first
run, conversion included), then `--whole_process_repeats` times with the converted model stored.

Prints two Markdown tables, a met / not met line per target (ratios on an AMX machine: VGG16@224 >= 7x,
ResNet50@224 >= 6x, InceptionV3@299 >= 5x, VGG16@32 >= 5x), the machine and the date. About 14 minutes
on 2 vCPUs with the defaults (33 when other jobs kept both cores busy). Run from the repository root:

    .venv/bin/python benchmarks/extraction.py [--networks=vgg16@224,resnet50@32] [--images=64]
        [--repeats=3] [--whole_process_networks=vgg16@32,resnet50@224] [--output_csv=extraction.csv]
"""

import csv
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmarks import common  # pylint: disable=wrong-import-position

DEFAULT_NETWORKS = "vgg16@224,resnet50@224,inception_v3@299,vgg16@32"
# The targets: speed-up of the default path over the naive one, on an AMX machine.
TARGETS = {"vgg16@224": 7.0, "resnet50@224": 6.0, "inception_v3@299": 5.0, "vgg16@32": 5.0}
NAIVE_BATCH = 32

_NETWORKS = flags.DEFINE_list("networks", DEFAULT_NETWORKS.split(","),
                              "network@input_size pairs, e.g. vgg16@224,resnet50@224.")
_IMAGES = flags.DEFINE_integer("images", None, "Images per configuration. Default: 64 for inputs "
                               "above 64 pixels, 512 for small ones.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes over the images; the median is "
                                "reported.", lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Naive/ours subprocess pairs per network, run in turn "
                               "(their timings are pooled), to spread the load of other jobs over "
                               "both.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the images and of the random weights.")
_OUTPUT_CSV = flags.DEFINE_string("output_csv", None, "Also write the model-call table here.")
_WHOLE = flags.DEFINE_list("whole_process_networks", ["vgg16@32", "resnet50@224"],
                           "network@input_size pairs for the whole-process comparison (empty: skip).")
_WHOLE_REPEATS = flags.DEFINE_integer("whole_process_repeats", 2, "Runs of each whole-process "
                                      "configuration (the median is reported).", lower_bound=1)
_MATMUL_SIZES = flags.DEFINE_list("matmul_sizes", ["2048", "4096"], "Square matmul sides for the "
                                  "peak; the best median is the peak (the first size only for the "
                                  "measurements beside each network's model calls).")
_WORKER = flags.DEFINE_string("worker", None, "Internal: run one configuration (a JSON object) and "
                              "exit.")


def _parse(item):
    name, _, size = item.partition("@")
    from features import networks  # pylint: disable=g-import-not-at-top

    spec = networks.get_network(name)
    side = int(size) if size else spec.input_size
    return f"{spec.name}@{side}", spec.name, side


def _default_images(side):
    return 512 if side <= 64 else 64


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


# ---------------------------------------------------------------------------------------------
# Child processes: one configuration each.


def _images(network, side, count, seed):
    """The same preprocessed images in every process: seeded random uint8, then `preprocess_input`."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    from features import networks  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)
    return networks.get_network(network).preprocess_input(images.astype(np.float32))


def _build(network, side, seed):
    import keras  # pylint: disable=g-import-not-at-top
    from features import networks  # pylint: disable=g-import-not-at-top

    keras.utils.set_random_seed(seed)
    return networks.build_feature_model(networks.get_network(network), "none", "avg", None,
                                        (side, side))


def _model_key(network, side, seed):
    from features import extraction  # pylint: disable=g-import-not-at-top

    # As features.extraction._build_engine makes it for --weights=none.
    return {"network": network, "weights": "none", "weights_sha256": "", "layer": "",
            "pooling": "avg", "input_size": [side, side],
            "library_versions": extraction.library_versions(), "seed": seed}


def _default_engine(network, side, seed):
    """The engine, precision and batch size `extract_features` picks by default, built."""
    from features import engines  # pylint: disable=g-import-not-at-top

    device = engines.detect_device()
    engine = engines.resolve_engine("auto", device)
    precision = engines.resolve_precision("auto", device)
    batch = engines.auto_batch_size((side, side), device)
    runner = engines.create_engine(engine, precision, device, lambda: _build(network, side, seed),
                                   _model_key(network, side, seed))
    return runner, batch, device


def _worker(config):
    """Runs one configuration; returns a JSON-able result (the features go to `config["features"]`)."""
    _quiet_tensorflow()
    import numpy as np  # pylint: disable=g-import-not-at-top

    mode = config["mode"]
    if mode == "calibrate":
        return _calibrate(config)
    network, side, seed = config["network"], config["side"], config["seed"]
    started = time.perf_counter()
    if mode == "prepare":
        runner, batch, device = _default_engine(network, side, seed)
        return {"seconds": time.perf_counter() - started, "engine": runner.name,
                "precision": runner.precision, "batch": batch, "device": device.description}
    x = _images(network, side, config["images"], seed)
    if mode == "naive":
        model = _build(network, side, seed)
        engine, precision, batch = "keras", "float32", NAIVE_BATCH
        model.predict(x[:batch], batch_size=batch, verbose=0)  # warm-up

        def run():
            return model.predict(x, batch_size=batch, verbose=0)
    else:
        runner, batch, _ = _default_engine(network, side, seed)
        engine, precision = runner.name, runner.precision
        runner(x[:batch])  # warm-up

        def run():
            return np.concatenate([runner(x[i:i + batch]) for i in range(0, len(x), batch)])
    build_seconds = time.perf_counter() - started
    seconds = []
    for _ in range(config["repeats"]):
        start = time.perf_counter()
        features = run()
        seconds.append(time.perf_counter() - start)
    np.save(config["features"], np.asarray(features, np.float32).reshape(len(x), -1))
    rss = {"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           "vm_hwm_kib": _vm_hwm_kib()}
    # The machine is shared: the peak is measured again right beside the model calls (the best counts).
    peaks = matmul_peaks(config["matmul_sizes"][:1]) if mode == "ours" else {}
    return {"seconds": seconds, "build_seconds": build_seconds, "engine": engine, "peaks": peaks,
            "precision": precision, "batch": batch, **rss}


def _vm_hwm_kib():
    """This process's own peak RSS (VmHWM), which unlike ru_maxrss starts afresh at exec."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _calibrate(config):
    """Matmul peaks, FLOPs per image and library versions, in a child process."""
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    try:
        import openvino  # pylint: disable=g-import-not-at-top
        openvino_version = openvino.__version__.split("-")[0]
    except ImportError:
        openvino_version = "not installed"
    peaks = matmul_peaks(config["matmul_sizes"])
    flops = {key: flops_per_image(network, side, config["seed"])
             for key, network, side in dict.fromkeys(tuple(item) for item in config["items"])}
    return {"peaks": peaks, "flops": flops, "tensorflow": tf.__version__,
            "keras": keras.__version__, "openvino": openvino_version}


def _run_worker(config, env):
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--worker={json.dumps(config)}"],
        capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        raise SystemExit(f"worker {config['mode']} {config.get('network', '')} failed "
                         f"(exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ---------------------------------------------------------------------------------------------
# Measured once in this process: matmul peaks and FLOPs.


def matmul_peaks(sizes, repeats=5):
    """Returns `{"float32": GFLOP/s, "bfloat16": GFLOP/s}`: the best median over `sizes`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    peaks = {}
    for dtype in (tf.float32, tf.bfloat16):
        best = 0.0
        for n in sizes:
            a = tf.cast(tf.random.uniform((n, n), seed=1), dtype)
            b = tf.cast(tf.random.uniform((n, n), seed=2), dtype)
            matmul = tf.function(tf.matmul)
            matmul(a, b).numpy()
            matmul(a, b).numpy()
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                matmul(a, b).numpy()
                seconds.append(time.perf_counter() - start)
            best = max(best, 2 * n ** 3 / statistics.median(seconds) / 1e9)
        peaks[dtype.name] = best
    return peaks


def flops_per_image(network, side, seed):
    """FLOPs of one image through the network, by TensorFlow's profiler on its frozen graph."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-import-not-at-top

    model = _build(network, side, seed)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, side, side, 3], tf.float32))
    graph_def = convert_to_constants.convert_variables_to_constants_v2(function).graph.as_graph_def()
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                                cmd="op", options=options)
    del model
    import keras  # pylint: disable=g-import-not-at-top

    keras.backend.clear_session()
    return profile.total_float_ops


# ---------------------------------------------------------------------------------------------
# Whole process.


def write_jpeg_dataset(root, count, side, classes, seed):
    """Writes `count` smooth random JPEGs of `side` x `side` in `classes` class folders."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    from PIL import Image  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c:02d}"), exist_ok=True)
    coarse = max(2, side // 8)
    for i in range(count):
        small = rng.integers(0, 256, size=(coarse, coarse, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((side, side), Image.BILINEAR)
        noise = rng.integers(-12, 13, size=(side, side, 3))
        pixels = np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, f"class_{i % classes:02d}", f"{i:06d}.jpg"),
                                     quality=90)






def extract_command(network, side, dataset, output, extra=()):
    return [sys.executable, "-m", "bin.extract_features", f"--network={network}", "--weights=none",
            f"--input_size={side}", f"--dataset_dir={dataset}", f"--output_dir={output}",
            "--validation_split=0.2", *extra]


def whole_process(key, network, side, count, repeats, seed, scratch):
    """Times the command naive and default; returns a dict of medians."""
    dataset = os.path.join(scratch, f"{network}_{side}_data")
    write_jpeg_dataset(dataset, count, side if side <= 64 else int(side * 8 / 7), 2, seed)
    store = os.path.join(scratch, f"{network}_{side}_store")
    env = {**os.environ, "BOTTLENECK_CACHE_HOME": store, "TF_CPP_MIN_LOG_LEVEL": "2"}
    naive_flags = ("--engine=keras", "--precision=float32", f"--batch_size={NAIVE_BATCH}")
    runs = {"naive": [], "first": [], "default": []}

    def run(kind, extra):
        output = os.path.join(scratch, f"out_{network}_{side}_{kind}_{len(runs[kind])}")
        runs[kind].append(common.timed_command(
            extract_command(network, side, dataset, output, extra), env, scratch)[:2])
        shutil.rmtree(output, ignore_errors=True)

    shutil.rmtree(store, ignore_errors=True)
    run("first", ())  # an empty model store: conversion included
    for _ in range(repeats):  # interleaved, so that load from other jobs hits both alike
        run("naive", naive_flags)
        run("default", ())
    shutil.rmtree(dataset, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    return {kind: (statistics.median(s for s, _ in values), max(r for _, r in values))
            for kind, values in runs.items()}


# ---------------------------------------------------------------------------------------------
# Report.


def machine():
    model = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    from features import engines  # pylint: disable=g-import-not-at-top

    cpu = engines.cpu_flags()
    present = {flag: flag in cpu for flag in ("amx_bf16", "avx512_bf16", "avx512f", "avx2")}
    return model, present


def _agreement(ours, naive):
    import numpy as np  # pylint: disable=g-import-not-at-top

    a, b = np.load(ours).astype(np.float64), np.load(naive).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)
    relative = np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)
    return float(cosine.min()), float(relative.max())


def _mib(kib):
    return kib / 1024


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    _quiet_tensorflow()
    if _WORKER.value:
        print("RESULT " + json.dumps(_worker(json.loads(_WORKER.value))), flush=True)
        return
    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()
    model_name, present = machine()
    items = [_parse(item) for item in _NETWORKS.value]
    whole_items = [_parse(item) for item in _WHOLE.value]
    print(f"# Extraction benchmark, {started:%Y-%m-%d %H:%M %Z}", flush=True)
    print(f"machine: {model_name}, os.cpu_count()={os.cpu_count()}, "
          + ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in present.items())
          + f"; load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}",
          flush=True)

    # TensorFlow is imported only in subprocesses: a child's ru_maxrss starts from the high-water mark
    # of the process that started it (Linux carries it over exec), so this one stays small.
    calibration = _run_worker({"mode": "calibrate", "items": items + whole_items, "seed": _SEED.value,
                               "matmul_sizes": [int(n) for n in _MATMUL_SIZES.value]},
                              dict(os.environ))
    peaks, flops = calibration["peaks"], calibration["flops"]
    print(f"tensorflow {calibration['tensorflow']}, keras {calibration['keras']}, "
          f"openvino {calibration['openvino']}", flush=True)
    print(f"matmul peak (tf.matmul, {'/'.join(_MATMUL_SIZES.value)} square, median of 5, best size): "
          f"float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s",
          flush=True)
    for key in dict.fromkeys(key for key, _, _ in items + whole_items):
        print(f"{key}: {flops[key] / 1e9:.2f} GFLOP/image (TF profiler)", flush=True)

    scratch = tempfile.mkdtemp(prefix="bottleneck-extraction-bench-")
    store = os.path.join(scratch, "store")
    env = {**os.environ, "BOTTLENECK_CACHE_HOME": store}
    rows = []
    peak_samples = [peaks]
    try:
        for key, network, side in items:
            count = _IMAGES.value or _default_images(side)
            base = {"network": network, "side": side, "seed": _SEED.value, "images": count,
                    "repeats": _REPEATS.value,
                    "matmul_sizes": [int(n) for n in _MATMUL_SIZES.value]}
            prepared = _run_worker({**base, "mode": "prepare"}, env)
            results = {}
            for _ in range(_ROUNDS.value):
                for mode in ("naive", "ours"):
                    features = os.path.join(scratch, f"{network}_{side}_{mode}.npy")
                    result = _run_worker({**base, "mode": mode, "features": features}, env)
                    result["features"] = features
                    if mode in results:
                        result["seconds"] += results[mode]["seconds"]
                        for field in ("peak_rss_kib", "vm_hwm_kib"):
                            result[field] = max(result[field], results[mode][field])
                    results[mode] = result
            naive, ours = results["naive"], results["ours"]
            peak_samples.append(ours["peaks"])
            naive_rate = count / statistics.median(naive["seconds"])
            ours_rate = count / statistics.median(ours["seconds"])
            cosine, relative = _agreement(ours["features"], naive["features"])
            gflops = flops[key] / 1e9 * ours_rate
            row = {
                "network": key, "gflop_per_image": flops[key] / 1e9, "images": count,
                "naive_images_per_s": naive_rate, "ours_images_per_s": ours_rate,
                "ours_engine": ours["engine"], "ours_precision": ours["precision"],
                "ours_batch": ours["batch"], "ratio": ours_rate / naive_rate,
                "naive_gflops": flops[key] / 1e9 * naive_rate, "ours_gflops": gflops,
                "pct_bf16_peak": 100 * gflops / peaks["bfloat16"],
                "pct_f32_peak": 100 * gflops / peaks["float32"],
                "naive_peak_rss_mib": _mib(naive["peak_rss_kib"]),
                "ours_peak_rss_mib": _mib(ours["peak_rss_kib"]),
                "min_cosine": cosine, "max_rel_error": relative,
                "prepare_seconds": prepared["seconds"],
                "naive_seconds": naive["seconds"], "ours_seconds": ours["seconds"],
            }
            rows.append(row)
            print(f"{key}: naive {naive_rate:.1f} img/s {[round(s, 2) for s in naive['seconds']]} s, "
                  f"ours {ours_rate:.1f} img/s {[round(s, 2) for s in ours['seconds']]} s "
                  f"({ours['engine']}, {ours['precision']}, batch {ours['batch']}; engine made in "
                  f"{prepared['seconds']:.1f} s on {prepared['device']}), ratio "
                  f"{row['ratio']:.2f}x; VmHWM naive {_mib(naive['vm_hwm_kib']):.0f} MiB, ours "
                  f"{_mib(ours['vm_hwm_kib']):.0f} MiB", flush=True)
            for result in results.values():
                os.remove(result["features"])

        whole = []
        for key, network, side in whole_items:
            count = _IMAGES.value or _default_images(side)
            times = whole_process(key, network, side, count, _WHOLE_REPEATS.value, _SEED.value,
                                  scratch)
            whole.append((key, count, times))
            print(f"{key} whole process ({count} JPEGs): {json.dumps(times)}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    # Other jobs may load the machine at any moment: measured again at the end, the best of both counts.
    again = _run_worker({"mode": "calibrate", "items": [], "seed": _SEED.value,
                         "matmul_sizes": [int(n) for n in _MATMUL_SIZES.value]}, dict(os.environ))
    print(f"matmul peak again at the end: float32 {again['peaks']['float32']:.0f} GFLOP/s, bfloat16 "
          f"{again['peaks']['bfloat16']:.0f} GFLOP/s", flush=True)
    peak_samples.append(again["peaks"])
    peaks = {dtype: max(sample[dtype] for sample in peak_samples) for dtype in peaks}
    for row in rows:
        row["pct_bf16_peak"] = 100 * row["ours_gflops"] / peaks["bfloat16"]
        row["pct_f32_peak"] = 100 * row["ours_gflops"] / peaks["float32"]
    load_end = os.getloadavg()
    print()
    print(f"Peaks (best of {len(peak_samples)} measurements: start, beside each network's model calls, end): bfloat16 matmul {peaks['bfloat16']:.0f} GFLOP/s, float32 matmul "
          f"{peaks['float32']:.0f} GFLOP/s (tf.matmul on this machine). Model calls only, median of "
          f"{_REPEATS.value * _ROUNDS.value}, after one warm-up batch; images in memory; random weights.")
    print()
    print("| network@size | GFLOP/img | images | naive img/s (keras, float32, batch 32) | ours img/s "
          "(engine, precision, batch) | ratio | naive GFLOP/s | ours GFLOP/s | % of bf16 peak | "
          "% of f32 peak | peak RSS naive / ours (MiB) | min cosine | max rel. error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['gflop_per_image']:.2f} | {r['images']} | "
              f"{r['naive_images_per_s']:.1f} | {r['ours_images_per_s']:.1f} ({r['ours_engine']}, "
              f"{r['ours_precision']}, {r['ours_batch']}) | {r['ratio']:.2f}x | "
              f"{r['naive_gflops']:.0f} | {r['ours_gflops']:.0f} | {r['pct_bf16_peak']:.0f}% | "
              f"{r['pct_f32_peak']:.0f}% | {r['naive_peak_rss_mib']:.0f} / "
              f"{r['ours_peak_rss_mib']:.0f} | {r['min_cosine']:.6f} | {r['max_rel_error']:.2e} |")
    if whole:
        print()
        print(f"Whole process: `python -m bin.extract_features --weights=none --validation_split=0.2` "
              f"on a 2-class JPEG folder, wall time with start-up, median of "
              f"{_WHOLE_REPEATS.value}; naive = `--engine=keras --precision=float32 --batch_size=32`, "
              "default = no engine flags, with the converted model stored (first run = empty store, "
              "conversion included, one run).")
        print()
        print("| network | images | naive CLI s | default CLI s | ratio | default first run s | "
              "ratio incl. conversion | peak RSS naive / default / first (MiB) |")
        print("|---|---|---|---|---|---|---|---|")
        for key, count, times in whole:
            naive_s, naive_rss = times["naive"]
            default_s, default_rss = times["default"]
            first_s, first_rss = times["first"]
            print(f"| {key} | {count} | {naive_s:.1f} | {default_s:.1f} | {naive_s / default_s:.2f}x | "
                  f"{first_s:.1f} | {naive_s / first_s:.2f}x | {_mib(naive_rss):.0f} / "
                  f"{_mib(default_rss):.0f} / {_mib(first_rss):.0f} |")
    print()
    by_key = {r["network"]: r for r in rows}
    for key, target in TARGETS.items():
        if key in by_key:
            ratio = by_key[key]["ratio"]
            print(f"- target {key} >= {target:.0f}x: {'met' if ratio >= target else 'NOT met'} "
                  f"(measured {ratio:.2f}x, {by_key[key]['ours_engine']} "
                  f"{by_key[key]['ours_precision']})")
    for key, count, times in whole:
        if key in by_key:
            model_ratio = by_key[key]["ratio"]
            whole_ratio = times["naive"][0] / times["default"][0]
            kept = (f"{(whole_ratio - 1) / (model_ratio - 1):.0%} of the gain kept"
                    if model_ratio > 1.05 else "no model-call gain to keep")
            print(f"- whole process {key}: {whole_ratio:.2f}x against {model_ratio:.2f}x for the "
                  f"model calls alone ({kept})")
    finished = datetime.datetime.now().astimezone()
    print()
    print(f"Machine: {model_name}; os.cpu_count()={os.cpu_count()}; "
          + ", ".join(f"{flag}: {'present' if on else 'absent'}" for flag, on in present.items())
          + f"; load average at start {load_start[0]:.2f} / {load_start[1]:.2f} / "
          f"{load_start[2]:.2f}, at end {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f}; "
          f"{started:%Y-%m-%d %H:%M}–{finished:%H:%M %Z} "
          f"({(finished - started).total_seconds() / 60:.1f} min).")
    if _OUTPUT_CSV.value:
        with open(_OUTPUT_CSV.value, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    app.run(main)
