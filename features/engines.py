"""Inference engines and numeric precisions for running a frozen network.

An engine turns a `keras.Model` from `features.networks.build_feature_model`
into a callable from a `(batch, height, width, 3)` float32 batch of
preprocessed images to a `(batch, *feature_shape)` float32 array:

- `keras`: the model's own `predict_on_batch` on TensorFlow. With more than
  one GPU, the model is built under `tf.distribute.MirroredStrategy`, which
  splits every batch over all visible GPUs.
- `xla`: the same, compiled with XLA (`jit_compile=True`); fast on GPUs,
  slow on CPUs.
- `openvino`: Intel's OpenVINO runtime (installed by default where it has
  wheels), which on CPUs runs fused kernels, bf16 through AMX or AVX512-BF16,
  and int8 models quantized by NNCF through VNNI, AMX or AVX2. The converted
  model, and each int8 model quantized from it, are kept under
  `$BOTTLENECK_CACHE_HOME/openvino` (default
  `~/.cache/bottleneck-cache/openvino`) so later runs skip the conversion and
  the calibration.

`auto` picks `openvino` on a CPU when it is installed, else `keras`, and
`xla` on GPUs. Precisions: `float32`, `bfloat16`, `float16` (GPUs only;
weights stay float32 and matrix products run in the lower precision, as
Keras' `mixed_*` policies do), `int8` (OpenVINO only: weights and
activations quantized after calibration on the dataset's own training
images, see `features.precision`), and `auto`, which measures: see
`features.precision` and `features.extraction`.
"""

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings

import numpy as np
from absl import logging

from bottleneck_cache.pipeline import checks

ENGINES = ("auto", "keras", "xla", "openvino")
PRECISIONS = ("auto", "float32", "bfloat16", "int8", "float16")
_KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# int8 models run their quantized layers in int8 and the rest in float32.
_OPENVINO_HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "int8": "f32"}
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


class EngineError(ValueError):
    """An engine or precision that cannot run here."""


@dataclasses.dataclass(frozen=True)
class Device:
    """What extraction runs on.

    Attributes:
        kind: `"cpu"` or `"gpu"`.
        count: GPUs used (1 on a CPU).
        bfloat16: the device computes bfloat16 natively (AMX, AVX512-BF16,
            or a GPU of compute capability 8.0 or later).
        description: for logs, e.g. `"cpu (amx_bf16)"` or `"2 gpus"`.
        names: the TensorFlow devices a batch is split over when there are
            several, e.g. `("/gpu:0", "/gpu:1")`.
    """

    kind: str
    count: int
    bfloat16: bool
    description: str
    names: tuple = ()


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """Returns the CPU's feature flags (e.g. `{"avx2", "amx_bf16"}`), or an empty set."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name (e.g. `"AMD EPYC 9R14"`), or `""`."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def engine_versions():
    """Versions of the packages that run and quantize OpenVINO models, for stored-model keys."""
    return {package: _version(package) for package in ("openvino", "nncf")}


def _may_have_gpus():
    """False when there is surely no GPU, so TensorFlow need not be imported to tell."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(os.path.exists(path) for path in ("/proc/driver/nvidia/gpus", "/dev/nvidiactl",
                                                 "/dev/dxg", "/dev/kfd"))


def detect_device(cpuinfo="/proc/cpuinfo"):
    """Returns the `Device` TensorFlow will run on: all visible GPUs, else the CPU.

    TensorFlow (seconds to import) is asked only on machines with a GPU driver.
    """
    gpus = []
    if _may_have_gpus():
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability")
                        or (0, 0) for gpu in gpus]
        lowest = min(capabilities)
        return Device("gpu", len(gpus), lowest >= (8, 0),
                      f"{len(gpus)} gpu{'s' if len(gpus) > 1 else ''} (compute capability "
                      f"{lowest[0]}.{lowest[1]})", tuple(f"/gpu:{i}" for i in range(len(gpus))))
    flags = cpu_flags(cpuinfo)
    found = [flag for flag in _BF16_CPU_FLAGS if flag in flags]
    return Device("cpu", 1, bool(found), f"cpu ({', '.join(found) or 'no bf16 units'})")


def resolve_precision(precision, device, engine="keras"):
    """Checks a precision against the device and the (resolved) engine.

    `"auto"` is returned as it is: `features.extraction` resolves it by
    measurement with OpenVINO on CPUs (`features.precision`), and to float32
    with the other engines and on GPUs.

    Args:
        precision: one of `PRECISIONS`.
        device: a `Device`.
        engine: the resolved engine (see `resolve_engine`).

    Returns:
        `precision`.

    Raises:
        EngineError: an unknown precision, float16 on a CPU, or int8 with
            another engine than openvino.
    """
    checks.check_choice(precision, "precision", PRECISIONS, error=EngineError)
    if precision == "float16" and device.kind == "cpu":
        raise EngineError(
            "Expected --precision=float16 only on a GPU: CPUs emulate float16 slowly and "
            f"inexactly. Received it on {device.description}. Use --precision=bfloat16 or auto."
        )
    if precision == "int8" and engine != "openvino":
        raise EngineError(
            f"Expected --precision=int8 with --engine=openvino (on a CPU). Received: engine "
            f"{engine} on {device.description}. Use --engine=openvino, or --precision=auto."
        )
    return precision


def nncf_installed():
    """True if the `nncf` package (int8 quantization) can be imported."""
    return importlib.util.find_spec("nncf") is not None


def _version(package):
    import importlib.metadata  # pylint: disable=g-import-not-at-top

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def openvino_installed():
    """True if the `openvino` package can be imported."""
    return importlib.util.find_spec("openvino") is not None


def resolve_engine(engine, device):
    """Resolves `"auto"` to the fastest engine for `device` (see the module docstring).

    Raises:
        EngineError: an unknown engine, or `openvino` when it is not installed
            or on a GPU.
    """
    checks.check_choice(engine, "engine", ENGINES, error=EngineError)
    if engine == "auto":
        if device.kind == "gpu":
            return "xla"
        return "openvino" if openvino_installed() else "keras"
    if engine == "openvino":
        if device.kind == "gpu":
            raise EngineError(f"Expected --engine=openvino on a CPU. Received: {device.description}; "
                              "use --engine=xla or auto on GPUs.")
        if not openvino_installed():
            raise EngineError("Expected the openvino package for --engine=openvino. Received: it "
                              "is not installed (it has no wheel for this platform, or was "
                              "uninstalled). Run: pip install openvino nncf, or use --engine=keras.")
    return engine


def auto_batch_size(input_size, device):
    """Images per network call when none is given.

    Small images need large batches to keep the matrix units busy; large ones
    gain nothing past 32 on a CPU and only cost memory (activations grow with
    the batch). GPUs take twice as many per device.

    Args:
        input_size: `(height, width)`.
        device: a `Device`.
    """
    pixels = input_size[0] * input_size[1]
    batch = 128 if pixels <= 64 * 64 else 64 if pixels <= 128 * 128 else 32
    return batch * 2 * device.count if device.kind == "gpu" else batch


@contextlib.contextmanager
def _dtype_policy(precision):
    """Builds layers under Keras' mixed policy for `precision`, then restores the old one."""
    import keras  # pylint: disable=g-import-not-at-top

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_KERAS_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _strategy(device):
    """`MirroredStrategy` over the device's units when there are several, else the default."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    if len(device.names) > 1:
        return tf.distribute.MirroredStrategy(list(device.names))
    return tf.distribute.get_strategy()


class KerasEngine:
    """Runs a Keras model with `predict_on_batch`, optionally XLA-compiled.

    Under a strategy with several replicas (`MirroredStrategy` over GPUs),
    each batch is cut into one slice per replica, the slices run in
    parallel, and the outputs are put back together in order.

    Attributes:
        name: `"keras"` or `"xla"`.
        precision: the precision it runs in.
        output_shape: `(None, *feature_shape)`.
    """

    def __init__(self, build_model, precision, jit_compile=False, strategy=None):
        """Builds the model in `precision` under `strategy`.

        Args:
            build_model: a function of no arguments returning the float32-input
                feature `keras.Model`; it is called under the dtype policy and
                the distribution strategy.
            precision: `"float32"`, `"bfloat16"` or `"float16"`.
            jit_compile: compile with XLA.
            strategy: a `tf.distribute.Strategy`, e.g. `MirroredStrategy`;
                None for the default one.
        """
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        self.name = "xla" if jit_compile else "keras"
        self.precision = precision
        strategy = strategy or tf.distribute.get_strategy()
        with strategy.scope(), _dtype_policy(precision):
            self._model = build_model()
            # compile() only records jit_compile here: nothing is trained.
            self._model.compile(jit_compile=jit_compile)
        self.output_shape = self._model.output_shape
        self._strategy = strategy
        if strategy.num_replicas_in_sync > 1:
            step = tf.function(lambda x: self._model(x, training=False), jit_compile=jit_compile)
            self._step = tf.function(lambda values: strategy.run(step, args=(values,)),
                                     reduce_retracing=True)

    def __call__(self, batch):
        """Maps `(batch, height, width, 3)` float32 inputs to float32 features."""
        if self._strategy.num_replicas_in_sync == 1:
            return np.asarray(self._model.predict_on_batch(batch), dtype=np.float32)
        # predict_on_batch would give every replica the whole batch.
        slices = np.array_split(np.asarray(batch, np.float32), self._strategy.num_replicas_in_sync)
        values = self._strategy.experimental_distribute_values_from_function(
            lambda context: slices[context.replica_id_in_sync_group])
        outputs = self._step(values)
        return np.concatenate([np.asarray(output, dtype=np.float32) for output in
                               self._strategy.experimental_local_results(outputs)])


def model_store():
    """The folder of stored converted and quantized models and of precision measurements."""
    home = os.environ.get("BOTTLENECK_CACHE_HOME",
                          os.path.join(os.path.expanduser("~"), ".cache", "bottleneck-cache"))
    return os.path.join(home, "openvino")


def store_key(payload):
    """A file-name key (24 hex digits) for a JSON-able description of a stored model."""
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class OpenVINOEngine:
    """Runs a network converted to OpenVINO on the CPU.

    The converted model is stored under `<model store>/<key>.xml`, where `key`
    covers everything that determines the network (its name, weights, layer,
    pooling, input size, seed of random weights, and library versions), so
    only the first run with given settings pays for conversion. An int8 model
    is stored the same way, under a key that adds the calibration images and
    NNCF's version and options, so only the first run pays for calibration.

    Attributes:
        name: `"openvino"`.
        precision: the precision it runs in.
        output_shape: `(None, *feature_shape)`.
        quantized_now: True if this engine quantized its int8 model (no
            stored one was found).
    """

    def __init__(self, build_model, precision, model_key, calibration=None):
        """Loads the converted model, converting `build_model()` first if needed.

        Args:
            build_model: a function of no arguments returning the float32 feature
                `keras.Model`; called only when no converted model is stored.
            precision: `"float32"`, `"bfloat16"` or `"int8"`.
            model_key: a JSON-able description of the network's settings.
            calibration: for int8, a `features.precision.Calibration`.

        Raises:
            EngineError: the CPU cannot run `precision`, or int8 without
                calibration images or without NNCF to quantize.
        """
        import openvino as ov  # pylint: disable=g-import-not-at-top

        # Importing OpenVINO (its converter's logger) removes absl's log handler from the root
        # logger; the next line logged would install Python's bare "INFO:absl:" one. Put it back.
        logging.use_absl_handler()

        self.name = "openvino"
        self.precision = precision
        self.quantized_now = False
        core = ov.Core()
        path, key = self._converted(ov, build_model, model_key)
        if precision == "int8":
            path = self._quantized(ov, core, path, key, calibration)
        model = core.read_model(path)
        hint = getattr(ov.Type, _OPENVINO_HINTS[precision])
        # Set even for float32: OpenVINO picks bf16 by itself on CPUs that have it.
        self._compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                           "PERFORMANCE_HINT": "LATENCY"})
        used = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        if used != hint:
            raise EngineError(
                f"Expected OpenVINO to run in {precision}. Received: this CPU runs it in {used} "
                "(no bf16 units). Use --precision=float32 (or auto), or --engine=keras, which "
                "emulates bfloat16."
            )
        shape = self._compiled.output(0).get_partial_shape()
        self.output_shape = (None, *(int(str(d)) for d in list(shape)[1:]))

    @staticmethod
    def _save(ov, model, path):
        """Saves `model` to `path` (`.xml` + `.bin`) so that a reader never sees half of it."""
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=folder)
        try:
            ov.save_model(model, os.path.join(work, "model.xml"), compress_to_fp16=False)
            # The .bin first: a reader takes the .xml as the sign that both are there.
            os.replace(os.path.join(work, "model.bin"), path[:-4] + ".bin")
            os.replace(os.path.join(work, "model.xml"), path)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @classmethod
    def _converted(cls, ov, build_model, model_key):
        """Returns `(path, key)` of the stored converted model, converting it if needed."""
        key = store_key({"model": model_key, "versions": {"openvino": ov.__version__}})
        path = os.path.join(model_store(), f"{key}.xml")
        if os.path.exists(path) and os.path.exists(path[:-4] + ".bin"):
            return path, key
        model = build_model()
        with warnings.catch_warnings():
            # Keras warns that the converter traces it with tensors, not KerasTensors.
            warnings.simplefilter("ignore")
            converted = ov.convert_model(
                model, example_input=np.zeros((1, *model.input_shape[1:]), np.float32))
        converted.reshape([-1, *model.input_shape[1:]])
        cls._save(ov, converted, path)
        return path, key

    def _quantized(self, ov, core, path, key, calibration):
        """Returns the path of the stored int8 model of the converted one at `path`, making it if needed."""
        if calibration is None:
            raise EngineError("Expected calibration images for --precision=int8. Received: none. "
                              "Run it through extract_features, which samples the training split.")
        options = {"preset": "mixed", "fast_bias_correction": False, "per_image": True}
        versions = {"nncf": _version("nncf"), "openvino": ov.__version__}
        quantized = os.path.join(model_store(), store_key(
            {"converted": key, "calibration": calibration.key, "options": options,
             "versions": versions}) + "-int8.xml")
        if os.path.exists(quantized) and os.path.exists(quantized[:-4] + ".bin"):
            return quantized
        if not nncf_installed():
            raise EngineError("Expected the nncf package to quantize the network for "
                              "--precision=int8. Received: it is not installed. Run: pip install "
                              "nncf, or use --precision=bfloat16, float32 or auto.")
        from bottleneck_cache.features import precision as precisions  # pylint: disable=g-import-not-at-top

        model = precisions.quantize(core.read_model(path), calibration.load())
        self._save(ov, model, quantized)
        self.quantized_now = True
        return quantized

    def __call__(self, batch):
        """Maps `(batch, height, width, 3)` float32 inputs to float32 features."""
        outputs = self._compiled(np.ascontiguousarray(batch, dtype=np.float32))
        return np.asarray(outputs[self._compiled.output(0)], dtype=np.float32)


def create_engine(engine, precision, device, build_model, model_key, calibration=None):
    """Builds the engine that runs the network.

    Args:
        engine: a resolved engine name (see `resolve_engine`).
        precision: a resolved precision (see `resolve_precision`).
        device: the `Device`.
        build_model: a function of no arguments returning the float32 feature
            `keras.Model`.
        model_key: a JSON-able description of the network's settings, for
            engines that store a converted model.
        calibration: for int8, a `features.precision.Calibration`.

    Returns:
        A callable from `(batch, height, width, 3)` float32 preprocessed images
        to `(batch, *feature_shape)` float32 features, with `name`, `precision`
        and `output_shape` attributes.
    """
    if engine == "openvino":
        return OpenVINOEngine(build_model, precision, model_key, calibration)
    return KerasEngine(build_model, precision, jit_compile=engine == "xla",
                       strategy=_strategy(device))
