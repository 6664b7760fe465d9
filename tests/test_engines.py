"""Tests of `features.engines` and of extraction with each engine and precision."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bottleneck_cache.features import engines
from bottleneck_cache.features import extraction
from bottleneck_cache.features import networks
from bottleneck_cache.features import precision as precisions
from bottleneck_cache.pipeline import cache

CPU = engines.Device("cpu", 1, False, "cpu (no bf16 units)")
AMX_CPU = engines.Device("cpu", 1, True, "cpu (amx_bf16)")
GPU = engines.Device("gpu", 2, True, "2 gpus (compute capability 8.0)")
needs_openvino = pytest.mark.skipif(not engines.openvino_installed(), reason="openvino not installed")


def agreement(features, reference):
    """`(min cosine similarity, max relative L2 error)` of rows against the reference."""
    a, b = features.reshape(len(features), -1), reference.reshape(len(reference), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(axis=1) / norms
    error = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    return cosine.min(), error.max()


def test_cpu_flags_and_device(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu avx2 avx512f amx_bf16 amx_tile\n")
    assert {"avx2", "amx_bf16"} <= engines.cpu_flags(str(cpuinfo))
    assert engines.cpu_flags(str(tmp_path / "missing")) == frozenset()
    device = engines.detect_device(str(cpuinfo))
    assert (device.kind, device.bfloat16, device.description) == ("cpu", True, "cpu (amx_bf16)")
    cpuinfo.write_text("flags : fpu avx2 fma\n")
    assert not engines.detect_device(str(cpuinfo)).bfloat16


@pytest.mark.parametrize("device", [CPU, AMX_CPU, GPU])
def test_precision_resolution_leaves_auto_to_the_measurement(device):
    # features.precision.select resolves auto by measurement (tests/test_precision.py).
    assert engines.resolve_precision("auto", device) == "auto"
    assert engines.resolve_precision("bfloat16", device) == "bfloat16"
    assert engines.resolve_precision("int8", device, "openvino") == "int8"


def test_no_gpu_driver_means_no_tensorflow_import(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags : avx2\n")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from features import engines; "
         f"d = engines.detect_device({str(cpuinfo)!r}); "
         "print(d.kind, 'tensorflow' in sys.modules)"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
        text=True, timeout=120, check=True)
    assert done.stdout.split() == ["cpu", "False"]


def test_precision_errors():
    with pytest.raises(engines.EngineError, match=r"Expected --precision=float16 only on a GPU.*"
                                                  r"Received it on cpu \(no bf16 units\)"):
        engines.resolve_precision("float16", CPU)
    with pytest.raises(engines.EngineError, match=r"Expected precision to be one of \('auto', 'float32', "
                                                  r"'bfloat16', 'int8', 'float16'\). Received: "
                                                  r"precision='fp8'\."):
        engines.resolve_precision("fp8", CPU)
    with pytest.raises(engines.EngineError, match=r"Expected --precision=int8 with --engine=openvino "
                                                  r"\(on a CPU\). Received: engine keras on cpu"):
        engines.resolve_precision("int8", CPU, "keras")


def test_engine_resolution(monkeypatch):
    assert engines.resolve_engine("auto", GPU) == "xla"
    assert engines.resolve_engine("keras", CPU) == "keras"
    monkeypatch.setattr(engines, "openvino_installed", lambda: True)
    assert engines.resolve_engine("auto", CPU) == "openvino"
    with pytest.raises(engines.EngineError, match="Expected --engine=openvino on a CPU"):
        engines.resolve_engine("openvino", GPU)
    monkeypatch.setattr(engines, "openvino_installed", lambda: False)
    assert engines.resolve_engine("auto", CPU) == "keras"
    with pytest.raises(engines.EngineError, match=r"Expected the openvino package.*pip install "
                                                  r"openvino nncf, or use --engine=keras"):
        engines.resolve_engine("openvino", CPU)
    with pytest.raises(engines.EngineError, match=r"Expected engine to be one of \('auto', 'keras', "
                                                  r"'xla', 'openvino'\). Received: engine='tensorrt'\."):
        engines.resolve_engine("tensorrt", CPU)


def test_auto_batch_size():
    assert engines.auto_batch_size((32, 32), CPU) == 128
    assert engines.auto_batch_size((96, 96), CPU) == 64
    assert engines.auto_batch_size((224, 224), CPU) == 32
    assert engines.auto_batch_size((224, 224), GPU) == 128


def small_network(network="mobilenet_v2"):
    """A random-weight network at input 32 and 6 preprocessed images: `(build, batch)`."""
    spec = networks.get_network(network)

    def build():
        import keras  # pylint: disable=g-import-not-at-top

        keras.utils.set_random_seed(0)
        return networks.build_feature_model(spec, "none", "avg", input_size=(32, 32))

    images = np.random.default_rng(0).uniform(0, 255, size=(6, 32, 32, 3)).astype(np.float32)
    return build, spec.preprocess_input(images)


KEY = {"network": "mobilenet_v2", "weights": "none", "input_size": [32, 32], "seed": 0}


@pytest.mark.parametrize("engine, precision, min_cosine, max_error", [
    ("xla", "float32", 0.99999, 1e-4),
    ("keras", "bfloat16", 0.999, 0.05),
    pytest.param("openvino", "float32", 0.99999, 1e-4, marks=needs_openvino),
])
def test_engines_agree_with_keras_float32(engine, precision, min_cosine, max_error, tmp_path,
                                          monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_HOME", str(tmp_path))
    build, batch = small_network()
    reference = engines.create_engine("keras", "float32", CPU, build, KEY)(batch)
    runner = engines.create_engine(engine, precision, CPU, build, KEY)
    features = runner(batch)
    assert (runner.name, runner.precision) == (engine, precision)
    assert features.dtype == np.float32 and features.shape == reference.shape == (6, 1280)
    assert runner.output_shape == (None, 1280)
    cosine, error = agreement(features, reference)
    assert cosine >= min_cosine and error <= max_error, (cosine, error)


@needs_openvino
def test_openvino_keeps_the_converted_model(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_HOME", str(tmp_path))
    build, batch = small_network()
    first = engines.create_engine("openvino", "float32", CPU, build, KEY)(batch)
    stored = sorted(os.listdir(tmp_path / "openvino"))
    assert len(stored) == 2 and stored[0].endswith(".bin") and stored[1].endswith(".xml")

    def fail():
        raise AssertionError("converted again")

    np.testing.assert_array_equal(engines.create_engine("openvino", "float32", CPU, fail, KEY)(batch),
                                  first)
    # Other settings are another model.
    with pytest.raises(AssertionError, match="converted again"):
        engines.create_engine("openvino", "float32", CPU, fail, {**KEY, "seed": 1})


@needs_openvino
@pytest.mark.skipif(engines.detect_device().bfloat16, reason="this CPU has bf16 units")
def test_openvino_refuses_bfloat16_it_would_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_HOME", str(tmp_path))
    build, _ = small_network()
    with pytest.raises(engines.EngineError, match=r"Expected OpenVINO to run in bfloat16. Received: "
                                                  r"this CPU runs it in .*--precision=float32"):
        engines.create_engine("openvino", "bfloat16", CPU, build, KEY)


def test_keras_policy_is_restored():
    import keras  # pylint: disable=g-import-not-at-top

    build, _ = small_network()
    engines.create_engine("keras", "bfloat16", CPU, build, KEY)
    assert keras.config.dtype_policy().name == "float32"


_MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from bottleneck_cache.features import engines
    from tests.test_engines import small_network, KEY
    build, batch = small_network()
    single = engines.Device("cpu", 1, False, "cpu")
    # Two logical CPUs stand in for two GPUs: the same MirroredStrategy code path.
    two = engines.Device("gpu", 2, False, "2 logical cpus", ("/cpu:0", "/cpu:1"))
    strategy = engines._strategy(two)
    reference = engines.create_engine("keras", "float32", single, build, KEY)(batch[:5])
    out = {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync}
    # Only "keras": XLA cannot place its kernels on logical CPUs (it can on GPUs), and the
    # "xla" engine differs from "keras" only in the jit_compile flag.
    features = engines.create_engine("keras", "float32", two, build, KEY)(batch[:5])
    out["error"] = float(np.abs(features - reference).max())
    out["shape"] = list(features.shape)
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _MIRRORED], cwd=root, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["strategy"] == "MirroredStrategy" and out["replicas"] == 2
    # An odd batch is split over both replicas and comes back whole and in order.
    assert out["shape"] == [5, 1280]
    assert out["error"] < 1e-4


def extract(folder_dataset, output_dir, **kwargs):
    options = dict(network="mobilenet_v2", dataset_dir=folder_dataset, output_dir=str(output_dir),
                   weights="none", input_size=32)
    options.update(kwargs)
    return extraction.extract_features(**options)


def test_cache_records_engine_and_precision(folder_dataset, tmp_path):
    keras_run = extract(folder_dataset, tmp_path / "k", engine="keras", precision="float32")
    metadata = cache.read_metadata(keras_run[0].path)[0]
    assert (metadata.engine, metadata.precision) == ("keras", "float32")
    auto = extract(folder_dataset, tmp_path / "a")
    metadata = cache.read_metadata(auto[0].path)[0]
    device = engines.detect_device()
    assert metadata.engine == engines.resolve_engine("auto", device)
    # Too few images for the measurement to pay: auto stays float32, exactly.
    assert metadata.precision == "float32"
    assert cache.read_fidelity(auto[0].path) == {"fidelity": "exact"}


@needs_openvino
def test_openvino_extraction_matches_keras(folder_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_HOME", str(tmp_path / "home"))
    ours = extract(folder_dataset, tmp_path / "ov", engine="openvino", precision="float32")
    theirs = extract(folder_dataset, tmp_path / "k", engine="keras", precision="float32")
    for a, b in zip(ours, theirs):
        x, y = cache.read_cache(a.path), cache.read_cache(b.path)
        assert x.filenames == y.filenames
        cosine, error = agreement(x.features, y.features)
        assert cosine > 0.99999 and error < 1e-4


def test_bad_engine_writes_nothing(folder_dataset, tmp_path):
    with pytest.raises(engines.EngineError, match="Expected engine to be one of .* Received: engine='tpu'"):
        extract(folder_dataset, tmp_path / "out", engine="tpu")
    assert not os.path.exists(tmp_path / "out")


@needs_openvino
def test_openvino_leaves_absls_log_handler_in_place(tmp_path):
    # Importing OpenVINO removes absl's handler from the root logger; later lines would then come
    # out in Python's bare "INFO:absl:" format (twice, once absl put its handler back).
    code = ("import logging\n"
            "from absl import logging as absl_logging\n"
            "absl_logging.use_absl_handler()\n"
            "from features import engines\n"
            "from tests.test_engines import CPU, KEY\n"
            "def build():\n"
            "    raise RuntimeError('no weights')  # e.g. a failed ImageNet download\n"
            "try:\n"
            "    engines.create_engine('openvino', 'float32', CPU, build, KEY)\n"
            "except RuntimeError:\n"
            "    pass\n"
            "absl_logging.info('the next line')\n"
            "print([type(h).__name__ for h in logging.root.handlers])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            env={**os.environ, "BOTTLENECK_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['ABSLHandler']"


@needs_openvino
def test_int8_without_nncf_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(engines, "nncf_installed", lambda: False)

    def build():
        import keras  # pylint: disable=g-import-not-at-top

        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))

    batch = np.zeros((2, 8, 8, 3), np.float32)
    calibration = precisions.Calibration("sample", lambda: batch, len(batch))
    with pytest.raises(engines.EngineError, match=r"^Expected the nncf package to quantize the network for "
                       r"--precision=int8\. Received: it is not installed\. Run: pip install nncf, or use "
                       r"--precision=bfloat16, float32 or auto\.$"):
        engines.create_engine("openvino", "int8", CPU, build, {"network": "tiny"}, calibration)
