"""Lower precisions chosen by measured fidelity: int8 calibration, the fidelity check and the gate.

A lower precision (bfloat16, int8) changes a network's features by an amount
that differs a lot from network to network: with real ImageNet weights, VGG16
in int8 keeps a per-image cosine similarity of 0.9997 to its float32 features,
MobileNetV2 in bfloat16 only 0.96. So `--precision=auto` measures, per network
and dataset, before extracting:

1. the float32 features of a small seeded sample of the dataset's validation
   images (`check_images`), and the time the engine takes for them;
2. the same for each lower precision this CPU runs natively
   (`cpu_candidates`), int8 after calibrating on a seeded sample of the
   training images (`calibration_images`);
3. each candidate's `Fidelity`: the cosine similarity of every sampled image's
   features to its float32 features (median, 1st percentile, minimum);

and `choose` keeps the fastest candidate whose fidelity passes the `Gate`.
The measurements are stored beside the converted models (see
`features.engines`), so only the first run with given settings pays for them.

The gate (median cosine >= 0.999 and 1st percentile >= 0.99) was checked
with paired head accuracies (`benchmarks/precision.py`, real ImageNet weights,
CIFAR-10 subset): every lower precision of MobileNetV2 and MobileNet measured
below it (medians 0.959 to 0.993) moved a softmax or logreg head by 1.1 to 1.5
points, so none must pass; a median bound of 0.99 would have let MobileNet's
bfloat16 through at -1.1 points. Configurations above it (VGG16 and Xception
in bfloat16, per the issue's measurements) kept both heads within a point.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
import time

import numpy as np

LOWER_PRECISIONS = ("bfloat16", "int8")
# NNCF's min/max statistics of activations settle within about a hundred images (its default is
# 300); 128 keeps calibration of VGG16@224 under a minute on 2 vCPUs.
CALIBRATION_IMAGES = 128
# Enough images for a stable median and 1st percentile of the cosine, small enough that the
# check of three precisions costs about as much as extracting 200 images in float32.
CHECK_IMAGES = 64
# `auto` measures only when the dataset has this many times the images the check and the
# calibration run; below that, they would cost more than the lower precision saves.
AUTO_MIN_FACTOR = 5
# CPU flags with native bfloat16 dot products, and with fast int8 ones (VNNI, AMX) or at least
# the AVX2 integer multiply-adds OpenVINO's int8 kernels fall back to.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx2")


@dataclasses.dataclass(frozen=True)
class Gate:
    """The fidelity a lower precision needs for `auto` to pick it.

    Attributes:
        min_median: lowest median per-image cosine similarity to float32.
        min_p1: lowest 1st percentile of it.
    """

    min_median: float = 0.999
    min_p1: float = 0.99

    def passes(self, fidelity):
        """True if `fidelity` (a `Fidelity`) is at least as close to float32 as the gate asks."""
        return fidelity.exact or (fidelity.median >= self.min_median and fidelity.p1 >= self.min_p1)

    def describe(self):
        return f"median cosine >= {self.min_median:g} and 1st percentile >= {self.min_p1:g}"


GATE = Gate()


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """How close features are to float32 ones, recorded in every cache.

    Attributes:
        exact: the features are float32 ones (nothing was measured).
        median: median per-image cosine similarity to float32 on the sample.
        p1: its 1st percentile.
        minimum: its minimum.
        images: images in the sample.
    """

    exact: bool
    median: float = 1.0
    p1: float = 1.0
    minimum: float = 1.0
    images: int = 0

    def to_attrs(self):
        """The cache's root attributes: `fidelity` and, when measured, the cosine statistics."""
        if self.exact:
            return {"fidelity": "exact"}
        return {"fidelity": "cosine", "fidelity_cosine_median": float(self.median),
                "fidelity_cosine_p1": float(self.p1), "fidelity_cosine_min": float(self.minimum),
                "fidelity_images": int(self.images)}

    @classmethod
    def from_attrs(cls, attrs):
        """The inverse of `to_attrs`; None when `attrs` has no `fidelity` (older caches)."""
        kind = attrs.get("fidelity")
        kind = kind.decode("utf-8") if isinstance(kind, bytes) else kind
        if kind is None:
            return None
        if kind == "exact":
            return cls(True)
        return cls(False, float(attrs["fidelity_cosine_median"]), float(attrs["fidelity_cosine_p1"]),
                   float(attrs["fidelity_cosine_min"]), int(attrs["fidelity_images"]))

    def describe(self):
        if self.exact:
            return "exact"
        return (f"cosine to float32 median {self.median:.5f}, 1st percentile {self.p1:.5f}, "
                f"min {self.minimum:.5f} on {self.images} images")


EXACT = Fidelity(True)


def cosine_rows(features, reference):
    """Per-row cosine similarity of `(n, ...)` features to `(n, ...)` reference features.

    Two all-zero rows agree (1.0); a zero row against a non-zero one does not (0.0).

    Returns:
        `(n,)` float64.
    """
    a = np.asarray(features, np.float64).reshape(len(features), -1)
    b = np.asarray(reference, np.float64).reshape(len(reference), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    cosine = np.divide((a * b).sum(axis=1), norms, out=np.zeros(len(a)), where=norms > 0)
    return np.where(both_zero, 1.0, np.clip(cosine, -1.0, 1.0))


def measure_fidelity(features, reference):
    """The `Fidelity` of `(n, ...)` features against their float32 `reference`."""
    cosine = cosine_rows(features, reference)
    return Fidelity(False, float(np.median(cosine)), float(np.percentile(cosine, 1)),
                    float(cosine.min()), len(cosine))


def cpu_candidates(flags):
    """The lower precisions a CPU with `flags` (see `engines.cpu_flags`) runs natively, in order."""
    found = []
    if any(flag in flags for flag in BF16_FLAGS):
        found.append("bfloat16")
    if any(flag in flags for flag in INT8_FLAGS):
        found.append("int8")
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One precision's speed and fidelity on the check sample.

    Attributes:
        precision: `"float32"`, `"bfloat16"` or `"int8"`.
        images_per_second: model calls only, after a warm-up batch.
        fidelity: a `Fidelity` (exact for float32).
    """

    precision: str
    images_per_second: float
    fidelity: Fidelity


def choose(measurements, gate=GATE):
    """Picks the fastest precision whose fidelity passes `gate`; float32 always passes.

    Args:
        measurements: `Measurement`s, one of them float32.
        gate: a `Gate`.

    Returns:
        `(measurement, reason)`: the chosen `Measurement` and one line saying why.

    Raises:
        ValueError: no float32 measurement.
    """
    reference = [m for m in measurements if m.precision == "float32"]
    if not reference:
        raise ValueError("Expected a float32 measurement to compare with. Received: "
                         f"{[m.precision for m in measurements]}. Measure float32 too.")
    passing = [m for m in measurements if gate.passes(m.fidelity)]
    best = max(passing, key=lambda m: m.images_per_second)
    base = reference[0].images_per_second
    parts = []
    for m in sorted(measurements, key=lambda m: -m.images_per_second):
        verdict = "chosen" if m is best else "passes" if gate.passes(m.fidelity) else "fails"
        parts.append(f"{m.precision} {m.images_per_second:.1f} img/s "
                     f"({m.images_per_second / base:.2f}x), "
                     f"{'exact' if m.fidelity.exact else f'cosine median {m.fidelity.median:.5f} / 1st pct {m.fidelity.p1:.5f}'}"
                     f": {verdict}")
    reason = f"precision auto chose {best.precision} (gate: {gate.describe()}): " + "; ".join(parts)
    return best, reason


def too_small(num_images, calibration_images, check_images):
    """A reason to stay float32 when the dataset is too small for the check to pay; else None."""
    needed = AUTO_MIN_FACTOR * (calibration_images + check_images)
    if num_images >= needed:
        return None
    return (f"precision auto chose float32: {num_images} images are fewer than {needed} "
            f"({AUTO_MIN_FACTOR} x the {calibration_images} calibration and {check_images} check "
            "images), too few for measuring lower precisions to pay for itself")


def sample_indices(total, size, seed):
    """A seeded, sorted sample of `min(size, total)` indices in `[0, total)`."""
    rng = np.random.default_rng([seed, 12])
    return np.sort(rng.choice(total, size=min(size, total), replace=False))


def sample_key(digest, ids, preprocessing, input_size):
    """A key for a sample of images: its split's digest, its ids, and how pixels became inputs."""
    text = json.dumps([digest, list(ids), preprocessing, list(input_size)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The images int8 quantization is calibrated on.

    Attributes:
        key: identifies them (see `sample_key`); part of the quantized model's key.
        load: a function of no arguments returning `(n, height, width, 3)`
            float32 preprocessed images.
        size: `n`.
    """

    key: str
    load: object
    size: int


def quantize(model, images):
    """Post-training int8 quantization of an OpenVINO model with NNCF.

    The options keep fidelity highest: the `MIXED` preset (asymmetric
    activations, which suit ReLU6 and other non-centred outputs), and NNCF's
    slower, more accurate bias correction (`fast_bias_correction=False`),
    which matters for small MobileNets. Images are fed one by one, so that
    statistics are per image, as NNCF advises.

    Args:
        model: an `openvino.Model` with a dynamic batch dimension.
        images: `(n, height, width, 3)` float32 preprocessed images.

    Returns:
        The quantized `openvino.Model`.
    """
    import nncf  # pylint: disable=g-import-not-at-top

    dataset = nncf.Dataset([images[i:i + 1] for i in range(len(images))])
    return nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED,
                         subset_size=len(images), fast_bias_correction=False)


def time_engine(engine, images, batch_size):
    """Runs `engine` over `images` in batches; returns `(features, images_per_second)`.

    The first batch is run once more before timing, as a warm-up.
    """
    engine(images[:batch_size])
    started = time.perf_counter()
    features = np.concatenate([engine(images[i:i + batch_size])
                               for i in range(0, len(images), batch_size)])
    return features, len(images) / max(time.perf_counter() - started, 1e-9)


def load_measurements(path):
    """The `Measurement`s stored at `path`, or None."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    return [Measurement(row["precision"], row["images_per_second"], Fidelity(**row["fidelity"]))
            for row in rows]


def store_measurements(path, measurements):
    """Writes `measurements` to `path` atomically (JSON)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".measurements.", suffix=".tmp", dir=os.path.dirname(path))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump([dataclasses.asdict(m) for m in measurements], f, indent=1)
    os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class Selection:
    """The precision extraction runs in, and what is known of its fidelity.

    Attributes:
        precision: the resolved precision.
        fidelity: a `Fidelity` (exact for float32).
        calibration: the `Calibration` of an int8 model, else None.
        reason: one line: what was chosen and why.
        engine: the engine the measurement built for `precision`, to reuse; or None.
    """

    precision: str
    fidelity: Fidelity
    calibration: object
    reason: str
    engine: object = None


@dataclasses.dataclass(frozen=True)
class Samples:
    """The images the fidelity check and the int8 calibration run on.

    Attributes:
        check: a `Calibration` (key and loader) of the check images.
        calibration: a `Calibration` of the calibration images.
        num_images: images the extraction will run (views included).
        batch_size: images per engine call.
    """

    check: Calibration
    calibration: Calibration
    num_images: int
    batch_size: int


def _measure(precisions, make_engine, samples, key, store):
    """`Measurement`s of `precisions` (float32 first), from the store or measured and stored.

    Returns:
        `(measurements, engines)`: engines holds those built here, by precision.
    """
    path = os.path.join(store, "measurements", f"{key}.json")
    stored = load_measurements(path)
    if stored is not None:
        return stored, {}
    images = samples.check.load()
    built, measurements, reference = {}, [], None
    for precision in precisions:
        engine = make_engine(precision, samples.calibration if precision == "int8" else None)
        features, speed = time_engine(engine, images, samples.batch_size)
        if reference is None:
            reference = features
        fidelity = EXACT if precision == "float32" else measure_fidelity(features, reference)
        measurements.append(Measurement(precision, float(speed), fidelity))
        built[precision] = engine
    store_measurements(path, measurements)
    return measurements, built


def needs_samples(requested, engine, device):
    """False where `select` decides without images: float32, and auto off OpenVINO or off a CPU."""
    if requested == "float32":
        return False
    return requested != "auto" or (engine == "openvino" and device.kind == "cpu")


def select(requested, engine, device, make_engine, samples, key_payload, store, flags=(),
           gate=GATE, nncf_available=True):
    """Resolves a precision request to the precision extraction runs in, with its fidelity.

    float32 needs nothing. A named lower precision is measured against float32
    on the check images, for the cache's fidelity attributes. `"auto"` stays
    float32 with an engine other than openvino (on GPUs, and where OpenVINO is
    missing), on CPUs without bf16 or int8 units, and on datasets too small
    (`too_small`); else it measures float32 and each of `cpu_candidates(flags)`
    and keeps the fastest that passes `gate` (`choose`). Measurements are
    stored in `store`, keyed by `key_payload` and the samples, so later runs
    reuse them.

    Args:
        requested: a precision of `features.engines.PRECISIONS`, already checked.
        engine: the resolved engine name.
        device: the `features.engines.Device`.
        make_engine: a function `(precision, calibration) -> engine`.
        samples: the `Samples` to measure on; may be None where
            `needs_samples` is False.
        key_payload: a JSON-able description of the network and engine.
        store: the folder measurements are stored in.
        flags: the CPU's feature flags.
        gate: the `Gate` for `"auto"`.
        nncf_available: whether int8 models can be quantized here.

    Returns:
        A `Selection`.
    """
    if requested == "float32":
        return Selection("float32", EXACT, None, "precision float32: exact")
    if requested == "auto":
        reason = None
        candidates = [p for p in cpu_candidates(flags) if p != "int8" or nncf_available]
        if engine != "openvino" or device.kind != "cpu":
            reason = (f"precision auto chose float32: lower precisions are measured only with the "
                      f"openvino engine on a CPU (here {engine} on {device.description})")
        elif not candidates:
            reason = (f"precision auto chose float32: this CPU has no bf16 or int8 units "
                      f"({', '.join(BF16_FLAGS + INT8_FLAGS)})")
        else:
            reason = too_small(samples.num_images, samples.calibration.size, samples.check.size)
        if reason:
            return Selection("float32", EXACT, None, reason)
        wanted = ["float32", *candidates]
    else:
        wanted = ["float32", requested]
    key = _measurement_key(key_payload, wanted, samples)
    measurements, built = _measure(wanted, make_engine, samples, key, store)
    if requested == "auto":
        best, reason = choose(measurements, gate)
    else:
        best = measurements[-1]
        reason = f"precision {requested}: {best.fidelity.describe()}"
    if best.precision == "float32":
        return Selection("float32", EXACT, None, reason, built.get("float32"))
    calibration = samples.calibration if best.precision == "int8" else None
    return Selection(best.precision, best.fidelity, calibration, reason, built.get(best.precision))


def _measurement_key(key_payload, wanted, samples):
    text = json.dumps({"model": key_payload, "precisions": wanted, "check": samples.check.key,
                       "calibration": samples.calibration.key if "int8" in wanted else "",
                       "batch_size": samples.batch_size},
                      sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
