"""Inference engines and numeric precisions for running a frozen network.

An engine turns a `keras.Model` from `features.networks.build_feature_model`
into a callable from a `(batch, height, width, 3)` float32 batch of
preprocessed images to a `(batch, *feature_shape)` float32 array:

- `keras`: the model's own `predict_on_batch` on TensorFlow. With more than
  one GPU, the model is built under `tf.distribute.MirroredStrategy`, which
  splits every batch over all visible GPUs.
- `xla`: the same, compiled with XLA (`jit_compile=True`); fast on GPUs,
  slow on CPUs.
- `openvino`: Intel's OpenVINO runtime (the `openvino` extra), which on CPUs
  runs fused kernels, and bf16 through AMX or AVX512-BF16 where the CPU has
  them. The converted model is kept under `$BOTTLENECK_CACHE_HOME/openvino`
  (default `~/.cache/bottleneck-cache/openvino`) so later runs skip the
  conversion.

`auto` picks `openvino` on a CPU when it is installed, else `keras`, and
`xla` on GPUs. Precisions: `float32`, `bfloat16` and `float16` (weights stay
float32; matrix products run in the lower precision, as Keras' `mixed_*`
policies do). `auto` is `float32`: a lower precision may be chosen only where
it keeps head accuracy within 0.5 points of float32, and with real ImageNet
weights bfloat16 moved it by up to 2.2 points (`benchmarks/precision.py`).
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

ENGINES = ("auto", "keras", "xla", "openvino")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
_OPENVINO_HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
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
        float16: the device has float16 tensor cores (compute capability 7.0+).
        description: for logs, e.g. `"cpu (amx_bf16)"` or `"2 gpus"`.
        names: the TensorFlow devices a batch is split over when there are
            several, e.g. `("/gpu:0", "/gpu:1")`.
    """

    kind: str
    count: int
    bfloat16: bool
    float16: bool
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
        return Device("gpu", len(gpus), lowest >= (8, 0), lowest >= (7, 0),
                      f"{len(gpus)} gpu{'s' if len(gpus) > 1 else ''} (compute capability "
                      f"{lowest[0]}.{lowest[1]})", tuple(f"/gpu:{i}" for i in range(len(gpus))))
    flags = cpu_flags(cpuinfo)
    found = [flag for flag in _BF16_CPU_FLAGS if flag in flags]
    return Device("cpu", 1, bool(found), False, f"cpu ({', '.join(found) or 'no bf16 units'})")


def _check_choice(kind, value, choices):
    if value not in choices:
        raise EngineError(f"Expected --{kind} to be one of {', '.join(choices)}. "
                          f"Received: {value!r}.")


def resolve_precision(precision, device):
    """Resolves `"auto"`, and refuses a precision the device cannot run well.

    `"auto"` is float32 on every device. The issue's rule is that it may pick
    a lower precision only where head accuracy stays within 0.5 points of
    float32; `benchmarks/precision.py` measured bfloat16 with the ImageNet
    weights of MobileNetV2 and MobileNet on CIFAR-10: +2.2 and -0.5 points
    (lowest row cosine 0.82). bfloat16 and float16 stay available by name.

    Args:
        precision: one of `PRECISIONS`.
        device: a `Device`.

    Returns:
        `"float32"`, `"bfloat16"` or `"float16"`.

    Raises:
        EngineError: an unknown precision, or float16 on a CPU.
    """
    _check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return "float32"
    if precision == "float16" and device.kind == "cpu":
        raise EngineError(
            "Expected --precision=float16 only on a GPU: CPUs emulate float16 slowly and "
            f"inexactly. Received it on {device.description}. Use --precision=bfloat16 or auto."
        )
    return precision


def openvino_installed():
    """True if the `openvino` package can be imported."""
    return importlib.util.find_spec("openvino") is not None


def resolve_engine(engine, device):
    """Resolves `"auto"` to the fastest engine for `device` (see the module docstring).

    Raises:
        EngineError: an unknown engine, or `openvino` when it is not installed
            or on a GPU.
    """
    _check_choice("engine", engine, ENGINES)
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
                              "is not installed. Run: pip install 'bottleneck-cache[openvino]', or "
                              "use --engine=keras.")
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


def _cache_home():
    return os.environ.get("BOTTLENECK_CACHE_HOME",
                          os.path.join(os.path.expanduser("~"), ".cache", "bottleneck-cache"))


class OpenVINOEngine:
    """Runs a network converted to OpenVINO on the CPU.

    The converted model is stored under `<cache home>/openvino/<key>.xml`,
    where `key` covers everything that determines the network (its name,
    weights, layer, pooling, input size, seed of random weights, and library
    versions), so only the first run with given settings pays for conversion.

    Attributes:
        name: `"openvino"`.
        precision: the precision it runs in.
        output_shape: `(None, *feature_shape)`.
    """

    def __init__(self, build_model, precision, model_key):
        """Loads the converted model, converting `build_model()` first if needed.

        Args:
            build_model: a function of no arguments returning the float32 feature
                `keras.Model`; called only when no converted model is stored.
            precision: `"float32"`, `"bfloat16"` or `"float16"`.
            model_key: a JSON-able description of the network's settings.

        Raises:
            EngineError: the CPU cannot run `precision`.
        """
        import openvino as ov  # pylint: disable=g-import-not-at-top

        self.name = "openvino"
        self.precision = precision
        core = ov.Core()
        model = core.read_model(self._converted(ov, build_model, model_key))
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
    def _converted(ov, build_model, model_key):
        """Returns the path of the stored converted model, converting it if needed."""
        versions = {"openvino": ov.__version__}
        text = json.dumps({"model": model_key, "versions": versions}, sort_keys=True)
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
        folder = os.path.join(_cache_home(), "openvino")
        path = os.path.join(folder, f"{key}.xml")
        if os.path.exists(path) and os.path.exists(path[:-4] + ".bin"):
            return path
        model = build_model()
        os.makedirs(folder, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".{key}.", dir=folder)
        try:
            with warnings.catch_warnings():
                # Keras warns that the converter traces it with tensors, not KerasTensors.
                warnings.simplefilter("ignore")
                converted = ov.convert_model(
                    model, example_input=np.zeros((1, *model.input_shape[1:]), np.float32))
            converted.reshape([-1, *model.input_shape[1:]])
            ov.save_model(converted, os.path.join(work, "model.xml"), compress_to_fp16=False)
            # The .bin first: a reader takes the .xml as the sign that both are there.
            os.replace(os.path.join(work, "model.bin"), path[:-4] + ".bin")
            os.replace(os.path.join(work, "model.xml"), path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return path

    def __call__(self, batch):
        """Maps `(batch, height, width, 3)` float32 inputs to float32 features."""
        outputs = self._compiled(np.ascontiguousarray(batch, dtype=np.float32))
        return np.asarray(outputs[self._compiled.output(0)], dtype=np.float32)


def create_engine(engine, precision, device, build_model, model_key):
    """Builds the engine that runs the network.

    Args:
        engine: a resolved engine name (see `resolve_engine`).
        precision: a resolved precision (see `resolve_precision`).
        device: the `Device`.
        build_model: a function of no arguments returning the float32 feature
            `keras.Model`.
        model_key: a JSON-able description of the network's settings, for
            engines that store a converted model.

    Returns:
        A callable from `(batch, height, width, 3)` float32 preprocessed images
        to `(batch, *feature_shape)` float32 features, with `name`, `precision`
        and `output_shape` attributes.
    """
    if engine == "openvino":
        return OpenVINOEngine(build_model, precision, model_key)
    return KerasEngine(build_model, precision, jit_compile=engine == "xla",
                       strategy=_strategy(device))
