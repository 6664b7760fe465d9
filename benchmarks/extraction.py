"""Extraction speed in every precision: the tutorial way against OpenVINO float32, bfloat16, int8 and auto.

For each network @ input size (default VGG16@224, ResNet50@224, InceptionV3@299, MobileNetV2@224), on the
same seeded random uint8 images held in memory and passed through the network's own `preprocess_input`:

- naive: `model.predict(images, batch_size=32)` in float32 on Keras (the tutorial script);
- OpenVINO float32, bfloat16 and int8 (NNCF, calibrated on `--calibration_images` other random images),
  batch from `auto_batch_size`;
- auto: `features.precision.select("auto", ...)`, which measures float32 and this CPU's lower
  precisions on `--check_images` of the images and keeps the fastest that passes the fidelity gate,
  then runs the chosen one.

Weights: the real ImageNet weights in `--weights_dir` where there are some (Keras' files
`mobilenet_v2_1.00_224_no_top.weights.h5`, `mobilenet_1_0_224_tf_no_top.weights.h5`,
`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`); seeded random ones elsewhere (speed does not depend
on the weight values, fidelity does: for random weights it is printed but means nothing, and auto's choice
on them says nothing about the real network's).

Each configuration runs in its own subprocess; only model calls are timed, after a warm-up batch; median
of `--repeats`. Each precision's peak is measured with OpenVINO MatMul models (f32, bf16, and int8
quantized by NNCF; 2048 x 2048 x 2048 and 1024 x 4096 x 4096, static shapes, fastest of 7 calls, at the start
and at the end, the best counts), and "% of peak" is the network's GFLOP/s (TensorFlow's profiler, a
multiply-add counts 2) over the peak of the precision it ran in. OpenVINO's int8 convolutions can run
faster than its int8 MatMul, so for int8 the fraction can exceed 1: the MatMul peak is then a lower bound.

Then the whole process for `--whole_process_networks` (default VGG16@224):
`python -m bottleneck_cache.bin.extract_features`
on a synthetic class-folder JPEG dataset of `--whole_process_images`, naive (`--engine=keras
--precision=float32 --batch_size=32`) against the defaults (auto), the first default run with an empty
model store (conversion, calibration and the fidelity check included) and later runs with it filled.

Then, unless `--head_networks` is empty, `benchmarks/precision.py`'s measurement of fidelity and head
accuracy with the real weights on the CIFAR-10 subset `cifar10-mini/` in `--data_dir` (JPEGs of CIFAR-10,
Krizhevsky 2009: `train/<class>/` and `val/<class>/`, 100 per class each; only networks with their weights
file in `--weights_dir` can be measured).

Prints the CPU's flags, the load, the tables and a met / not met line per target: on CPUs with AVX-512
VNNI or AMX, auto >= 4x the tutorial script on VGG16@224 (whole process, later runs) and >= 0.7 of the peak
of the precision auto runs in (model calls); on AVX2-only CPUs >= 1.8x. Run from the repository root:

    flock /tmp/bench.lock .venv/bin/python benchmarks/extraction.py [--networks=vgg16@224] [--images=64]
        [--whole_process_networks=vgg16@224] [--whole_process_images=960] [--head_networks=mobilenet_v2]
"""

import datetime
import json
import os
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

DEFAULT_NETWORKS = "vgg16@224,resnet50@224,inception_v3@299,mobilenet_v2@224"
NAIVE_BATCH = 32
PRECISIONS = ("float32", "bfloat16", "int8")
HINTS = {"float32": "f32", "bfloat16": "bf16", "int8": "f32"}
# The targets.
WHOLE_TARGET = {"vnni": 4.0, "avx2": 1.8}
PEAK_TARGET = 0.7
# MatMul shapes (m, k, n) of the peaks: the best of them counts.
PEAK_SHAPES = ((2048, 2048, 2048), (1024, 4096, 4096))

_NETWORKS = flags.DEFINE_list("networks", DEFAULT_NETWORKS.split(","),
                              "network@input_size pairs, e.g. vgg16@224,resnet50@224.")
_IMAGES = flags.DEFINE_integer("images", 64, "Images per model-call configuration.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes over the images (median).", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the images and of the random weights.")
_CALIBRATION = flags.DEFINE_integer("calibration_images", 32, "Random images int8 is calibrated on "
                                    "in the model-call measurements.", lower_bound=1)
_CHECK = flags.DEFINE_integer("check_images", 32, "Images auto's check runs on in the model-call "
                              "measurements.", lower_bound=1)
_WEIGHTS_DIR = flags.DEFINE_string(
    "weights_dir", common.WEIGHTS_DIR, "Folder of Keras ImageNet weights files, by their Keras file names: "
    + ", ".join(f"{name} ({network})" for (network, top), name in common.WEIGHTS_FILES.items() if not top)
    + ". A network without its file there runs with seeded random weights.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", common.DATA_DIR, "Folder holding cifar10-mini/ (or that folder itself), for fidelity and "
    f"head accuracy: {common.DATASETS['cifar10-mini']}.")
_WHOLE = flags.DEFINE_list("whole_process_networks", ["vgg16@224"],
                           "network@input_size pairs for the whole-process comparison (empty: skip).")
_WHOLE_IMAGES = flags.DEFINE_integer("whole_process_images", 960, "JPEGs of the whole-process "
                                     "dataset (auto measures only from 960 with the default "
                                     "sample sizes).", lower_bound=1)
_WHOLE_REPEATS = flags.DEFINE_integer("whole_process_repeats", 1, "Later runs of each whole-process "
                                      "configuration (median).", lower_bound=1)
_HEADS = flags.DEFINE_list("head_networks", ["mobilenet_v2"], "Real-weight networks whose fidelity "
                           "and head accuracy benchmarks/precision.py measures (empty: skip).")
_WORKER = flags.DEFINE_string("worker", None, "Internal: run one configuration (JSON) and exit.")


def _parse(item):
    from bottleneck_cache.features import networks  # pylint: disable=g-import-not-at-top

    name, _, size = item.partition("@")
    spec = networks.get_network(name)
    side = int(size) if size else spec.input_size
    return f"{spec.name}@{side}", spec.name, side


def _weights(network):
    return common.weights_file(network, _WEIGHTS_DIR.value) or "none"


# ---------------------------------------------------------------------------------------------
# Child processes: one configuration each.


def _images(network, side, count, seed):
    import numpy as np  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import networks  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)
    return networks.get_network(network).preprocess_input(images.astype(np.float32))


def _build(network, side, seed, weights):
    from bottleneck_cache.features import networks  # pylint: disable=g-import-not-at-top

    return networks.build_feature_model(networks.get_network(network), weights, "avg", None,
                                        (side, side), seed=seed)


def _engine_parts(config):
    """`(device, make_engine, batch)` for OpenVINO engines of the configuration's network."""
    from bottleneck_cache.features import engines  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import networks  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.features import precision as precisions  # pylint: disable=g-import-not-at-top

    network, side, seed, weights = config["network"], config["side"], config["seed"], config["weights"]
    device = engines.detect_device()
    key = {"network": network, "weights": weights, "weights_sha256": networks.weights_identity(
        weights)[1], "side": side, "seed": seed}
    calibration = precisions.Calibration(
        f"random-{seed + 1}-{config['calibration_images']}",
        lambda: _images(network, side, config["calibration_images"], seed + 1),
        config["calibration_images"])

    def make_engine(precision, _=None):
        return engines.create_engine("openvino", precision, device,
                                     lambda: _build(network, side, seed, weights), key,
                                     calibration if precision == "int8" else None)

    return device, make_engine, engines.auto_batch_size((side, side), device), calibration


def _worker(config):
    """Runs one configuration; returns a JSON-able result (features go to `config["features"]`)."""
    import numpy as np  # pylint: disable=g-import-not-at-top

    if config["mode"] == "calibrate":
        return _calibrate(config)
    network, side, seed = config["network"], config["side"], config["seed"]
    x = _images(network, side, config["images"], seed)
    started = time.perf_counter()
    extra = {}
    if config["mode"] == "naive":
        model = _build(network, side, seed, config["weights"])
        batch, precision = NAIVE_BATCH, "float32"
        model.predict(x[:batch], batch_size=batch, verbose=0)  # warm-up

        def run():
            return model.predict(x, batch_size=batch, verbose=0)
    else:
        from bottleneck_cache.features import precision as precisions  # pylint: disable=g-import-not-at-top
        from bottleneck_cache.features import engines  # pylint: disable=g-import-not-at-top

        device, make_engine, batch, calibration = _engine_parts(config)
        if config["mode"] == "auto":
            check = precisions.Calibration(f"check-{seed}", lambda: x[:config["check_images"]],
                                           config["check_images"])
            # A dataset large enough for the check to pay (see features.precision.too_small).
            samples = precisions.Samples(check, calibration, 10 ** 6, batch)
            selection = precisions.select("auto", "openvino", device, make_engine, samples,
                                          {"benchmark": config["network"], "side": side},
                                          engines.model_store(), engines.cpu_flags())
            runner = selection.engine or make_engine(selection.precision)
            extra = {"reason": selection.reason}
        else:
            runner = make_engine(config["mode"])
        precision = runner.precision
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
    return {"seconds": seconds, "build_seconds": build_seconds, "precision": precision,
            "batch": batch, **extra}


def openvino_peaks(shapes=PEAK_SHAPES, repeats=7):
    """GFLOP/s of OpenVINO MatMuls in f32, bf16 and int8 (NNCF-quantized): the best over `shapes`.

    Each `(m, k, n)` is an `(m, k)` input times a constant `(k, n)` matrix, with
    static shapes; the fastest of `repeats` calls counts (other jobs only slow
    calls down).
    """
    import numpy as np  # pylint: disable=g-import-not-at-top
    import openvino as ov  # pylint: disable=g-import-not-at-top
    import openvino.opset13 as ops  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(0)
    core, peaks = ov.Core(), dict.fromkeys(PRECISIONS, 0.0)
    for m, k, n in shapes:
        x = rng.normal(size=(m, k)).astype(np.float32)
        weights = rng.normal(size=(k, n)).astype(np.float32)
        for precision in PRECISIONS:
            parameter = ops.parameter([m, k], np.float32, name="x")
            model = ov.Model([ops.matmul(parameter, ops.constant(weights), False, False)],
                             [parameter])
            if precision == "int8":
                model = _quantize_matmul(model, x)
            compiled = core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": getattr(ov.Type, HINTS[precision]),
                "PERFORMANCE_HINT": "LATENCY"})
            compiled(x)
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                compiled(x)
                seconds.append(time.perf_counter() - start)
            peaks[precision] = max(peaks[precision], 2 * m * k * n / min(seconds) / 1e9)
    return peaks


def _quantize_matmul(model, x):
    """int8 weights and input (NNCF's default preset: symmetric, the fastest kernels)."""
    import nncf  # pylint: disable=g-import-not-at-top

    return nncf.quantize(model, nncf.Dataset([x]), subset_size=1)


def flops_per_image(network, side, seed):
    """FLOPs of one image through the network, by TensorFlow's profiler on its frozen graph."""
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-import-not-at-top

    model = _build(network, side, seed, "none")
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, side, side, 3], tf.float32))
    graph_def = convert_to_constants.convert_variables_to_constants_v2(function).graph.as_graph_def()
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                                cmd="op", options=options)
    keras.backend.clear_session()
    return profile.total_float_ops


def _calibrate(config):
    import openvino  # pylint: disable=g-import-not-at-top

    from bottleneck_cache.features import engines  # pylint: disable=g-import-not-at-top

    peaks = openvino_peaks()
    flops = {key: flops_per_image(network, side, config["seed"]) for key, network, side in
             config["items"]}
    return {"peaks": peaks, "flops": flops, "openvino": openvino.__version__.split("-")[0],
            "nncf": engines.engine_versions()["nncf"]}


def _run_worker(config, env):
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--worker={json.dumps(config)}"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        raise SystemExit(f"worker {config['mode']} {config.get('network', '')} failed "
                         f"(exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


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
    return [sys.executable, "-m", "bottleneck_cache.bin.extract_features", f"--network={network}",
            "--weights=none", f"--input_size={side}", f"--dataset_dir={dataset}", "--dataset=synthetic",
            f"--output_dir={output}", "--validation_split=0.2", *extra]


def whole_process(network, side, count, repeats, seed, scratch):
    """Times the command naive, default with an empty store, and default later; returns medians."""
    dataset = os.path.join(scratch, f"{network}_{side}_data")
    write_jpeg_dataset(dataset, count, int(side * 8 / 7), 2, seed)
    store = os.path.join(scratch, f"{network}_{side}_store")
    env = {**os.environ, "BOTTLENECK_CACHE_HOME": store, "TF_CPP_MIN_LOG_LEVEL": "2"}
    naive_flags = ("--engine=keras", "--precision=float32", f"--batch_size={NAIVE_BATCH}")
    runs = {"naive": [], "first": [], "later": []}
    chosen = {}

    def run(kind, extra):
        output = os.path.join(scratch, f"out_{network}_{side}_{kind}_{len(runs[kind])}")
        seconds, rss, _ = common.timed_command(extract_command(network, side, dataset, output, extra),
                                               env, scratch)
        runs[kind].append((seconds, rss))
        if kind != "naive":
            from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top

            path = os.path.join(output, cache.cache_filename(network, "synthetic", "train"))
            chosen[kind] = (cache.read_metadata(path)[0].precision, cache.read_fidelity(path))
        shutil.rmtree(output, ignore_errors=True)

    run("first", ())  # an empty model store: conversion, calibration and the check included
    for _ in range(repeats):  # interleaved, so that load from other jobs hits both alike
        run("naive", naive_flags)
        run("later", ())
    shutil.rmtree(dataset, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    times = {kind: (statistics.median(s for s, _ in values), max(r for _, r in values))
             for kind, values in runs.items()}
    return times, chosen


# ---------------------------------------------------------------------------------------------
# Report.


def _fidelity(path, reference):
    import numpy as np  # pylint: disable=g-import-not-at-top

    from bottleneck_cache.features import precision as precisions  # pylint: disable=g-import-not-at-top

    return precisions.measure_fidelity(np.load(path), np.load(reference))


def model_calls(items, flops, peaks, scratch, env):
    """Measures every configuration of every network; returns rows of dicts."""
    rows = []
    for key, network, side in items:
        weights = _weights(network)
        base = {"network": network, "side": side, "seed": _SEED.value, "images": _IMAGES.value,
                "repeats": _REPEATS.value, "weights": weights,
                "calibration_images": _CALIBRATION.value, "check_images": _CHECK.value}
        results = {}
        for mode in ("naive", *PRECISIONS, "auto"):
            features = os.path.join(scratch, f"{network}_{side}_{mode}.npy")
            results[mode] = {**_run_worker({**base, "mode": mode, "features": features}, env),
                             "features": features}
            rate = _IMAGES.value / statistics.median(results[mode]["seconds"])
            results[mode]["rate"] = rate
            print(f"  {key} {mode}: {rate:.1f} img/s ({results[mode]['precision']}, "
                  f"made in {results[mode]['build_seconds']:.0f} s)"
                  + (f"; {results[mode]['reason']}" if mode == "auto" else ""), flush=True)
        row = {"key": key, "weights": "real" if weights != "none" else "random",
               "gflop": flops[key] / 1e9, "naive": results["naive"]["rate"]}
        for mode in (*PRECISIONS, "auto"):
            used = results[mode]["precision"]
            row[mode] = (results[mode]["rate"], used,
                         flops[key] / 1e9 * results[mode]["rate"] / peaks[used])
        row["fidelity"] = {p: _fidelity(results[p]["features"], results["float32"]["features"])
                           for p in PRECISIONS[1:]}
        rows.append(row)
        for result in results.values():
            os.remove(result["features"])
    return rows


def _cell(row, mode):
    rate, used, fraction = row[mode]
    label = f" → {used}" if mode == "auto" else ""
    return f"{rate:.1f}{label} ({rate / row['naive']:.2f}x, {100 * fraction:.0f}%)"


def print_tables(rows, whole, peaks):
    print("\n| network | GFLOP/img | weights | naive Keras f32 img/s | OV f32 | OV bf16 | OV int8 | auto | "
          "bf16 cosine median / min | int8 cosine median / min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        fidelity = [f"{f.median:.4f} / {f.minimum:.4f}" if row["weights"] == "real" else
                    f"({f.median:.3f} / {f.minimum:.3f}, random weights)"
                    for f in row["fidelity"].values()]
        print(f"| {row['key']} | {row['gflop']:.2f} | {row['weights']} | {row['naive']:.1f} | "
              + " | ".join(_cell(row, mode) for mode in (*PRECISIONS, "auto")) + " | "
              + " | ".join(fidelity) + " |")
    print("\nCells: images/s (ratio to naive, % of the OpenVINO MatMul peak of the precision it ran in: "
          + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()) + ").")
    if whole:
        print("\n| network | images | naive CLI s | auto first run s (ratio) | auto later runs s (ratio) "
              "| auto chose | fidelity recorded | peak RSS naive / first / later (MiB) |")
        print("|---|---|---|---|---|---|---|---|")
        for key, count, times, chosen in whole:
            naive, first, later = (times[k][0] for k in ("naive", "first", "later"))
            rss = " / ".join(f"{times[k][1] / 1024:.0f}" for k in ("naive", "first", "later"))
            print(f"| {key} | {count} | {naive:.1f} | {first:.1f} ({naive / first:.2f}x) | "
                  f"{later:.1f} ({naive / later:.2f}x) | {chosen['later'][0]} | "
                  f"{json.dumps(chosen['later'][1])} | {rss} |")


def print_targets(rows, whole, cpu):
    vnni = bool({"avx512_vnni", "amx_int8", "avx_vnni"} & cpu)
    target = WHOLE_TARGET["vnni" if vnni else "avx2"]
    for key, _, times, chosen in whole:
        ratio = times["naive"][0] / times["later"][0]
        print(f"- target whole process {key}, auto later runs >= {target:g}x the tutorial script "
              f"({'VNNI/AMX' if vnni else 'AVX2-only'} CPU): {'met' if ratio >= target else 'NOT met'} "
              f"({ratio:.2f}x, auto chose {chosen['later'][0]})")
    for row in rows:
        rate, used, fraction = row["auto"]
        if used != "float32":
            print(f"- target {row['key']} auto >= {PEAK_TARGET:g} of the {used} peak in model calls: "
                  f"{'met' if fraction >= PEAK_TARGET else 'NOT met'} ({fraction:.2f})")
        else:
            print(f"- {row['key']}: auto kept float32 ({100 * fraction:.0f}% of the f32 peak)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if _WORKER.value:
        print("RESULT " + json.dumps(_worker(json.loads(_WORKER.value))), flush=True)
        return
    from bottleneck_cache.features import engines  # pylint: disable=g-import-not-at-top

    started = datetime.datetime.now().astimezone()
    load = os.getloadavg()
    cpu = engines.cpu_flags()
    shown = sorted(cpu & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16",
                          "amx_int8", "amx_tile"})
    print(f"# Extraction benchmark, {started:%Y-%m-%d %H:%M %Z}\nmachine: {engines.cpu_name()}, "
          f"{os.cpu_count()} cpus; flags: {' '.join(shown)}; load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    if _HEADS.value:  # Before any slow work: the last part needs the CIFAR-10 subset.
        try:
            common.dataset_folder(_DATA_DIR.value, "cifar10-mini")
        except ValueError as error:
            raise app.UsageError(f"{error} Or pass --head_networks= to skip that part.") from None
    items = [_parse(item) for item in _NETWORKS.value]
    whole_items = [_parse(item) for item in _WHOLE.value]
    scratch = tempfile.mkdtemp(prefix="bottleneck-extraction-bench-")
    env = {**os.environ, "BOTTLENECK_CACHE_HOME": os.path.join(scratch, "store")}
    try:
        calibration = _run_worker({"mode": "calibrate", "items": items, "seed": _SEED.value}, env)
        peaks, flops = calibration["peaks"], calibration["flops"]
        print(f"openvino {calibration['openvino']}, nncf {calibration['nncf']}; MatMul peaks "
              + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()), flush=True)
        rows = model_calls(items, flops, peaks, scratch, env)
        whole = []
        for key, network, side in whole_items:
            times, chosen = whole_process(network, side, _WHOLE_IMAGES.value, _WHOLE_REPEATS.value,
                                          _SEED.value, scratch)
            whole.append((key, _WHOLE_IMAGES.value, times, chosen))
            print(f"  {key} whole process: {json.dumps(times)} {json.dumps(chosen)}", flush=True)
        # Other jobs may load the machine at any moment: measured again at the end, the best counts.
        again = _run_worker({"mode": "calibrate", "items": [], "seed": _SEED.value}, env)["peaks"]
        print("MatMul peaks again at the end: "
              + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in again.items()), flush=True)
        peaks = {p: max(peaks[p], again[p]) for p in peaks}
        for row in rows:
            for mode in (*PRECISIONS, "auto"):
                rate, used, _ = row[mode]
                row[mode] = (rate, used, row["gflop"] * rate / peaks[used])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_tables(rows, whole, peaks)
    print()
    print_targets(rows, whole, cpu)
    if _HEADS.value:
        command = [sys.executable, os.path.join(ROOT, "benchmarks", "precision.py"),
                   f"--networks={','.join(_HEADS.value)}", f"--data_dir={_DATA_DIR.value}",
                   f"--weights_dir={_WEIGHTS_DIR.value}"]
        print(f"\n## Fidelity and head accuracy with real weights ({' '.join(command[1:])})",
              flush=True)
        subprocess.run(command, cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
    finished = datetime.datetime.now().astimezone()
    end = os.getloadavg()
    print(f"\nload average at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}; "
          f"{started:%Y-%m-%d %H:%M}–{finished:%H:%M %Z} "
          f"({(finished - started).total_seconds() / 60:.1f} min). VGG16 has no real weights here: "
          "its fidelity and head accuracy cannot be measured here, its speed is with random weights.")


if __name__ == "__main__":
    app.run(main)
