"""Stage-two speed: the tutorial's Keras `fit`, the previous Keras heads and ours, on the same caches.

Features:
- real: MobileNetV2 features of cifar10-mini (1,000 training x 1280, 1,000 validation), extracted
  into --workdir from --data_dir with --weights_dir's MobileNetV2 weights unless already there;
- synthetic: 10,000 x 2048 training and 2,500 validation features, 10 classes (fixed seed);
- sweep: 3 synthetic "networks" (1280, 1024 and 576 features) x 2 datasets, 1,000 + 1,000 rows each.

Each measurement is a fresh process, timed with its peak RSS:
- tutorial: a script with `keras.Sequential([Flatten, Dense(softmax)])`, `fit` 50 epochs, batch 256,
  on NumPy arrays;
- keras (previous version): the Keras heads `feature_extraction` trained before this version (same
  `build_keras_head`, `tf.data` pipelines, Adam, seed), softmax and mlp;
- ours: `feature_extraction --head=softmax|mlp|logreg` (and `--l2=auto`);
- sweep: one `feature_extraction` over the 6 pairs x 3 heads x 2 learning rates = 36 jobs.

Prints the CPU, load, a table per feature set with the ratios to the tutorial, the MLP's fraction of its
arithmetic limit (its FLOPs / the peak GFLOP/s of a one-thread float32 NumPy matmul of the same shape), and
the sweep against 36 tutorial runs. Run it alone:

    flock /tmp/bench.lock python benchmarks/heads.py [--workdir /tmp/heads-bench]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import common  # pylint: disable=wrong-import-position
from bottleneck_cache.pipeline import cache  # pylint: disable=wrong-import-position

TUTORIAL = """
import json, sys, time
from bottleneck_cache.pipeline import cache
import keras
train, validation = cache.read_cache(sys.argv[1]), cache.read_cache(sys.argv[2])
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input(train.feature_shape), keras.layers.Flatten(),
                          keras.layers.Dense(len(train.class_names), activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
started = time.perf_counter()
history = model.fit(train.features, train.labels, batch_size=256, epochs=50, shuffle=True,
                    validation_data=(validation.features, validation.labels), verbose=0)
print(json.dumps({"fit_seconds": time.perf_counter() - started,
                  "val_accuracy": history.history["val_accuracy"][-1]}))
"""
# The previous version's Keras training (classifiers/training.py before head.npz), kept to compare.
KERAS_HEAD = """
import json, sys, time
import numpy as np
from bottleneck_cache.pipeline import cache
from bottleneck_cache.classifiers import evaluation, heads
import keras
import tensorflow as tf
train, validation = cache.read_cache(sys.argv[1]), cache.read_cache(sys.argv[2])
head = sys.argv[3]
keras.utils.set_random_seed(0)
started = time.perf_counter()
model = heads.build_keras_head(head, train.feature_shape, len(train.class_names), 256, 0.5, 0.0)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
count = len(train.labels)
data = (tf.data.Dataset.from_tensor_slices((train.features, train.labels))
        .shuffle(count, seed=0, reshuffle_each_iteration=True).batch(256).repeat()
        .prefetch(tf.data.AUTOTUNE))
val = tf.data.Dataset.from_tensor_slices((validation.features, validation.labels)).batch(256).cache()
model.fit(data, steps_per_epoch=-(-count // 256), validation_data=val, epochs=50, verbose=0)
probabilities = model.predict(validation.features, batch_size=256, verbose=0)
print(json.dumps({"fit_seconds": time.perf_counter() - started,
                  "val_accuracy": evaluation.evaluate(probabilities, validation.labels)["val_accuracy"]}))
"""
_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


def _metadata(split, network, dataset):
    return cache.CacheMetadata(
        network=network, weights="none", weights_sha256="", layer="", pooling="avg",
        input_size=(32, 32), preprocessing="synthetic", dataset=dataset,
        dataset_digest=f"{dataset}-{split}", split=split, per_class=0, seed=0, library_versions="{}")


def write_synthetic(folder, network, dataset, rows, validation_rows, dim, classes=10, seed=0):
    """A train/validation pair of synthetic caches (class means + noise, fixed seed); returns the paths."""
    rng = np.random.default_rng(seed)
    means = (0.06 * rng.normal(size=(classes, dim))).astype(np.float32)
    paths = []
    for split, count, offset in (("train", rows, 0), ("validation", validation_rows, rows)):
        path = os.path.join(folder, cache.cache_filename(network, dataset, split))
        paths.append(path)
        if os.path.exists(path):
            continue
        labels = rng.integers(0, classes, count)
        features = np.maximum(means[labels] + rng.normal(size=(count, dim)).astype(np.float32), 0)
        with cache.CacheWriter(path, _metadata(split, network, dataset), [f"c{i}" for i in range(classes)],
                               (dim,)) as writer:
            writer.append(features, labels, [f"{offset + i}.png" for i in range(count)])
            writer.commit()
    return paths


def real_caches(workdir, data_dir, weights_dir):
    """MobileNetV2 caches of cifar10-mini in `workdir/real`, extracted if missing."""
    folder = os.path.join(workdir, "real")
    paths = [os.path.join(folder, cache.cache_filename("mobilenet_v2", "cifar10", split))
             for split in ("train", "validation")]
    if not all(os.path.exists(p) for p in paths):
        weights = os.path.join(weights_dir, "mobilenet_v2_1.00_224_no_top.weights.h5")
        subprocess.run([sys.executable, "-m", "bottleneck_cache.bin.extract_features", "--network=mobilenet_v2",
                        f"--dataset_dir={os.path.join(data_dir, 'cifar10-mini')}", "--dataset=cifar10",
                        f"--weights={weights}", f"--output_dir={folder}"], cwd=ROOT, env=_ENV, check=True)
    return paths


def run_script(code, *arguments, scratch):
    """Runs a Python `code` string in a fresh process; its last stdout line (JSON) plus wall time and RSS."""
    wall, rss, out = common.timed_command([sys.executable, "-c", code, *arguments], _ENV, scratch)
    return {**json.loads(out.strip().splitlines()[-1]), "wall": wall, "rss_mib": rss / 1024}


def ours(train, validation, output_dir, scratch, *flags):
    wall, rss, _ = common.timed_command(
        [sys.executable, "-m", "bottleneck_cache.bin.feature_extraction", f"--training_file={train}",
         f"--validation_file={validation}", f"--output_dir={output_dir}", *flags], _ENV, scratch)
    with open(os.path.join(output_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {**metrics, "wall": wall, "rss_mib": rss / 1024}


def matmul_peak(rows, inner, cols, seconds=1.0):
    """GFLOP/s of a one-thread float32 `(rows, inner) @ (inner, cols)` NumPy matmul (best of repeats)."""
    import threadpoolctl  # pylint: disable=g-import-not-at-top

    rng = np.random.default_rng(0)
    a = rng.normal(size=(rows, inner)).astype(np.float32)
    b = rng.normal(size=(inner, cols)).astype(np.float32)
    best = float("inf")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
    return 2.0 * rows * inner * cols / best / 1e9


def mlp_flops(rows, validation_rows, dim, units=256, classes=10, epochs=50):
    """FLOPs of the mlp's training: per epoch, forward and weight gradients on the training rows and
    a forward pass on the validation rows (the per-epoch val_loss)."""
    forward = 2 * (dim * units + units * classes)
    return epochs * (rows * (2 * forward + 2 * units * classes) + validation_rows * forward)


def _row(name, result, tutorial):
    return (f"| {name} | {result['wall']:.2f} | {result['fit_seconds']:.3f} | {result['rss_mib']:.0f} | "
            f"{result['val_accuracy']:.3f} | {tutorial['wall'] / result['wall']:.1f}x |")


def single_heads(label, train, validation, workdir, scratch, keras_too=True):
    """One table: tutorial, the previous Keras heads, ours; returns ours' results by head."""
    print(f"\n{label}\n\n| what | process wall s | training s | peak RSS MiB | val_accuracy | "
          f"wall vs tutorial |\n|---|---|---|---|---|---|", flush=True)
    tutorial = run_script(TUTORIAL, train, validation, scratch=scratch)
    print(_row("tutorial: `Sequential([Flatten, Dense softmax])`, `fit` 50 epochs, batch 256", tutorial,
               tutorial), flush=True)
    found = {}
    for head in ("softmax", "mlp") if keras_too else ():
        result = found[f"keras {head}"] = run_script(KERAS_HEAD, train, validation, head, scratch=scratch)
        print(_row(f"previous version's Keras `{head}` head (`tf.data`, Keras fit)", result, tutorial),
              flush=True)
    for head, flags in (("softmax", []), ("mlp", []), ("logreg", []), ("logreg", ["--l2=auto"])):
        name = head + (" --l2=auto" if flags else "")
        folder = os.path.join(workdir, "runs", f"{label[:12]}_{name}".replace(" ", ""))
        result = ours(train, validation, folder, scratch, f"--head={head}", *flags)
        found[name] = result
        print(_row(f"ours: `feature_extraction --head={head}{' ' + flags[0] if flags else ''}`", result,
                   tutorial), flush=True)
    return tutorial, found


def sweep(workdir, scratch, tutorial_wall, workers=1):
    """The 36-job sweep in one `feature_extraction` command (pairs in `workers` processes); its ratio to
    36 tutorial runs."""
    folder = os.path.join(workdir, "sweep")
    os.makedirs(folder, exist_ok=True)
    for seed, (network, dim) in enumerate((("net1280", 1280), ("net1024", 1024), ("net576", 576))):
        for offset, dataset in enumerate(("cifar10", "gtsrb")):
            write_synthetic(folder, network, dataset, 1000, 1000, dim, seed=10 * seed + offset)
    output = os.path.join(workdir, "runs", f"sweep-{os.getpid()}-{workers}")
    # 36 jobs: the 12 logreg ones ignore the learning rate, so 6 logreg heads are trained.
    wall, rss, out = common.timed_command(
        [sys.executable, "-m", "bottleneck_cache.bin.feature_extraction",
         f"--training_file={os.path.join(folder, '*_train.h5')}",
         f"--validation_file={os.path.join(folder, '*_validation.h5')}", "--head=softmax,mlp,logreg",
         "--learning_rate=0.001,0.01", f"--workers={workers}", f"--output_dir={output}"], _ENV, scratch)
    jobs = sum(1 for line in out.splitlines() if line.startswith("[") and "val_accuracy=" in line)
    print(f"\nsweep: 3 networks x 2 datasets x 3 heads x 2 learning rates, {jobs} jobs in one command, "
          f"--workers={workers}: "
          f"{wall:.2f} s wall, peak RSS {rss / 1024:.0f} MiB; 36 tutorial runs: "
          f"{36 * tutorial_wall:.1f} s -> {36 * tutorial_wall / wall:.1f}x faster", flush=True)
    return 36 * tutorial_wall / wall


def cpu_description():
    model, flags = platform.processor() or "?", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model in ("?", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    prefixes = ("avx512f", "avx512_bf16", "avx512_vnni", "amx", "avx2", "fma")
    wanted = [f for f in flags if f.startswith(prefixes)]
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(wanted) or '?'}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/heads-bench")
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data"))
    parser.add_argument("--weights_dir", default=os.path.join(ROOT, "..", "shared", "weights"))
    parser.add_argument("--skip_large", action="store_true", help="leave out the 10,000 x 2048 features")
    args = parser.parse_args()
    scratch = os.path.join(args.workdir, "scratch")
    os.makedirs(scratch, exist_ok=True)
    print(f"date {time.strftime('%Y-%m-%d %H:%M')}, {cpu_description()}, load {os.getloadavg()}")
    peaks = {}
    for rows, dim in ((256, 1280), (256, 2048)):
        peaks[dim] = matmul_peak(rows, dim, 256)
        print(f"one-thread float32 matmul ({rows} x {dim}) @ ({dim} x 256): {peaks[dim]:.1f} GFLOP/s")
    train, validation = real_caches(args.workdir, args.data_dir, args.weights_dir)
    tutorial, found = single_heads("MobileNetV2 features of cifar10-mini: 1,000 x 1280 train, 1,000 "
                                   "validation", train, validation, args.workdir, scratch)
    limit = mlp_flops(1000, 1000, 1280) / peaks[1280] / 1e9
    print(f"\nmlp-256 on 1,000 x 1280: {mlp_flops(1000, 1000, 1280) / 1e9:.0f} GFLOP, limit {limit:.2f} s, "
          f"trained in {found['mlp']['fit_seconds']:.2f} s = {found['mlp']['fit_seconds'] / limit:.2f}x the "
          f"limit; softmax trained in {found['softmax']['fit_seconds']:.3f} s", flush=True)
    if not args.skip_large:
        large = write_synthetic(os.path.join(args.workdir, "large"), "synthetic", "large", 10000, 2500, 2048)
        _, big = single_heads("synthetic features: 10,000 x 2048 train, 2,500 validation", *large,
                              args.workdir, scratch)
        limit = mlp_flops(10000, 2500, 2048) / peaks[2048] / 1e9
        seconds = big["mlp"]["fit_seconds"]
        print(f"\nmlp-256 on 10,000 x 2048: limit {limit:.2f} s, trained in {seconds:.2f} s "
              f"= {seconds / limit:.2f}x the limit", flush=True)
    speedups = {workers: sweep(args.workdir, scratch, tutorial["wall"], workers) for workers in (1, 2)}
    speedup = max(speedups.values())
    mlp_ratio = found["mlp"]["fit_seconds"] / (mlp_flops(1000, 1000, 1280) / peaks[1280] / 1e9)
    whole = tutorial["wall"] / found["softmax"]["wall"]
    checks = [
        ("one head (softmax), whole process, >= 5x faster than the tutorial", whole >= 5, f"{whole:.1f}x"),
        ("softmax training <= 0.1 s", found["softmax"]["fit_seconds"] <= 0.1,
         f"{found['softmax']['fit_seconds']:.3f} s"),
        ("mlp-256 training within 2x of its arithmetic limit", mlp_ratio <= 2, f"{mlp_ratio:.2f}x"),
        ("36-job sweep >= 20x faster than 36 tutorial runs", speedup >= 20,
         ", ".join(f"{speedups[w]:.1f}x (--workers={w})" for w in speedups)),
    ]
    for head in ("softmax", "mlp"):
        change = 100 * (found[head]["val_accuracy"] - found[f"keras {head}"]["val_accuracy"])
        checks.append((f"{head} accuracy within 1 point of the previous Keras head, or better",
                       change >= -1, f"{change:+.1f} points"))
    print("\n| target (1,000 x 1280 real features) | met | measured |\n|---|---|---|")
    for name, met, measured in checks:
        print(f"| {name} | {'yes' if met else 'no'} | {measured} |")
    print(f"\nload at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
