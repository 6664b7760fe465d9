"""Tests of `features.precision`: fidelity, the gate, int8 and `--precision=auto`.

Random weights make fidelity meaningless, so these test the mechanism (what is
measured, stored, chosen and recorded), not where the thresholds lie.
"""

import os

import numpy as np
import pytest

from bottleneck_cache.features import engines
from bottleneck_cache.features import extraction
from bottleneck_cache.features import precision as precisions
from bottleneck_cache.pipeline import cache
from tests.conftest import write_folder_dataset
from tests.test_engines import small_network

CPU = engines.Device("cpu", 1, True, "cpu (avx512_bf16)")
GPU = engines.Device("gpu", 1, True, "1 gpu (compute capability 8.0)")
needs_openvino = pytest.mark.skipif(
    not (engines.openvino_installed() and engines.nncf_installed()),
    reason="openvino or nncf not installed")


def fidelity(median, p1):
    return precisions.Fidelity(False, median, p1, p1 - 0.01, 64)


def measured(precision, speed, median=1.0, p1=1.0):
    exact = precision == "float32"
    return precisions.Measurement(precision, speed, precisions.EXACT if exact else fidelity(median, p1))


def test_choose_takes_the_fastest_that_passes():
    gate = precisions.Gate(min_median=0.999, min_p1=0.99)
    rows = [measured("float32", 10), measured("bfloat16", 20, 0.9995, 0.995),
            measured("int8", 40, 0.9995, 0.995)]
    best, reason = precisions.choose(rows, gate)
    assert best.precision == "int8"
    assert reason.startswith("precision auto chose int8 (gate: median cosine >= 0.999 and 1st "
                             "percentile >= 0.99): int8 40.0 img/s (4.00x)")
    # int8 fails on its 1st percentile: the next fastest that passes.
    rows[2] = measured("int8", 40, 0.9995, 0.95)
    best, reason = precisions.choose(rows, gate)
    assert best.precision == "bfloat16" and "int8 40.0 img/s (4.00x), cosine median 0.99950 / 1st " \
        "pct 0.95000: fails" in reason
    # bfloat16 fails on its median: float32.
    rows[1] = measured("bfloat16", 20, 0.99, 0.995)
    assert precisions.choose(rows, gate)[0].precision == "float32"
    # A candidate that passes but is slower than float32 is not chosen.
    rows = [measured("float32", 10), measured("bfloat16", 8, 1.0, 1.0)]
    assert precisions.choose(rows, gate)[0].precision == "float32"


def test_choose_needs_float32():
    with pytest.raises(ValueError, match=r"Expected a float32 measurement to compare with. "
                                         r"Received: \['int8'\]. Measure float32 too."):
        precisions.choose([measured("int8", 40)])


def test_fidelity_statistics_and_attributes():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(100, 4, 5)).astype(np.float32)
    noisy = reference + rng.normal(scale=0.1, size=reference.shape).astype(np.float32)
    cosine = precisions.cosine_rows(noisy, reference)
    found = precisions.measure_fidelity(noisy, reference)
    assert found.images == 100 and found.minimum == cosine.min()
    assert found.minimum <= found.p1 <= found.median < 1.0
    assert precisions.Fidelity.from_attrs(found.to_attrs()) == found
    assert precisions.EXACT.to_attrs() == {"fidelity": "exact"}
    assert precisions.Fidelity.from_attrs({"fidelity": b"exact"}) == precisions.EXACT
    assert precisions.Fidelity.from_attrs({}) is None
    zeros = np.zeros((2, 3))
    np.testing.assert_array_equal(precisions.cosine_rows(zeros, zeros), [1.0, 1.0])
    np.testing.assert_array_equal(precisions.cosine_rows(zeros, np.ones((2, 3))), [0.0, 0.0])


def test_cpu_candidates_and_small_datasets():
    assert precisions.cpu_candidates({"avx512_bf16", "avx512_vnni"}) == ("bfloat16", "int8")
    assert precisions.cpu_candidates({"amx_bf16", "amx_int8"}) == ("bfloat16", "int8")
    assert precisions.cpu_candidates({"avx2"}) == ("int8",)
    assert precisions.cpu_candidates({"sse4_2"}) == ()
    assert precisions.too_small(960, 128, 64) is None
    assert precisions.too_small(959, 128, 64).startswith(
        "precision auto chose float32: 959 images are fewer than 960")
    indices = precisions.sample_indices(50, 8, seed=3)
    assert len(indices) == 8 and list(indices) == sorted(set(indices))
    np.testing.assert_array_equal(indices, precisions.sample_indices(50, 8, seed=3))
    assert len(precisions.sample_indices(5, 8, seed=3)) == 5


class RoundingEngine:
    """A linear map whose output is rounded as a lower precision would: a real engine on NumPy."""

    calls = 0

    def __init__(self, precision, calibration):
        RoundingEngine.calls += 1
        self.name, self.precision, self.calibration = "numpy", precision, calibration
        self.weights = np.random.default_rng(0).normal(size=(12, 6))
        self.decimals = {"float32": None, "bfloat16": 2, "int8": -1}[precision]

    def __call__(self, batch):
        out = batch.reshape(len(batch), -1) @ self.weights
        return out if self.decimals is None else np.round(out, self.decimals)


def samples(num_images=1000, check=16, calibration=8):
    rng = np.random.default_rng(1)
    images = rng.normal(scale=3.0, size=(check, 2, 2, 3))
    return precisions.Samples(
        check=precisions.Calibration("check-key", lambda: images, check),
        calibration=precisions.Calibration("calibration-key", lambda: images[:calibration],
                                           calibration),
        num_images=num_images, batch_size=4)


def test_select_measures_stores_and_reuses(tmp_path):
    store = str(tmp_path / "store")
    flags = {"avx512_bf16", "avx512_vnni"}
    RoundingEngine.calls = 0
    selection = precisions.select("auto", "openvino", CPU, RoundingEngine, samples(), {"m": 1},
                                  store, flags)
    assert RoundingEngine.calls == 3
    # Rounding to 2 decimals keeps the cosine near 1; rounding to tens does not.
    assert selection.precision in ("float32", "bfloat16")
    assert selection.reason.startswith(f"precision auto chose {selection.precision}")
    stored = os.listdir(os.path.join(store, "measurements"))
    assert len(stored) == 1
    again = precisions.select("auto", "openvino", CPU, RoundingEngine, samples(), {"m": 1}, store,
                              flags)
    assert RoundingEngine.calls == 3 and again.precision == selection.precision
    assert again.engine is None and again.fidelity == selection.fidelity
    # A named precision is measured against float32 too, for the cache's fidelity.
    named = precisions.select("int8", "openvino", CPU, RoundingEngine, samples(), {"m": 1}, store)
    assert named.precision == "int8" and not named.fidelity.exact
    assert named.calibration.key == "calibration-key" and named.engine.calibration is not None
    assert named.reason.startswith("precision int8: cosine to float32 median")


@pytest.mark.parametrize("engine, device, flags, num_images, reason", [
    ("keras", CPU, {"avx512_bf16"}, 1000, "measured only with the openvino engine on a CPU "
                                           "(here keras on cpu"),
    ("openvino", GPU, {"avx512_bf16"}, 1000, "(here openvino on 1 gpu"),
    ("openvino", CPU, {"sse4_2"}, 1000, "this CPU has no bf16 or int8 units"),
    ("openvino", CPU, {"avx512_bf16"}, 119, "119 images are fewer than 120 (5 x the 8 calibration "
                                           "and 16 check images)"),
])
def test_auto_stays_float32_without_measuring(engine, device, flags, num_images, reason, tmp_path):
    RoundingEngine.calls = 0
    selection = precisions.select("auto", engine, device, RoundingEngine, samples(num_images),
                                  {"m": 1}, str(tmp_path), flags)
    assert (selection.precision, selection.fidelity) == ("float32", precisions.EXACT)
    assert reason in selection.reason and RoundingEngine.calls == 0
    assert not os.path.exists(tmp_path / "measurements")


def test_float32_records_exact_fidelity(folder_dataset, tmp_path):
    results = extraction.extract_features(
        "mobilenet_v2", dataset_dir=folder_dataset, output_dir=str(tmp_path / "out"),
        weights="none", input_size=32, engine="keras", precision="float32")
    for result in results:
        assert cache.read_fidelity(result.path) == {"fidelity": "exact"}


def test_bad_sample_sizes(folder_dataset, tmp_path):
    for name in ("calibration_images", "check_images"):
        with pytest.raises(ValueError, match=rf"Expected {name} >= 1. Received: {name}=0."):
            extraction.extract_features("mobilenet_v2", dataset_dir=folder_dataset, weights="none",
                                        output_dir=str(tmp_path / "out"), input_size=32,
                                        **{name: 0})
    with pytest.raises(engines.EngineError, match=r"Expected --precision=int8 with "
                                                  r"--engine=openvino"):
        extraction.extract_features("mobilenet_v2", dataset_dir=folder_dataset, weights="none",
                                    output_dir=str(tmp_path / "out"), input_size=32,
                                    engine="keras", precision="int8")
    assert not os.path.exists(tmp_path / "out")


@needs_openvino
@pytest.mark.slow
def test_int8_model_is_stored_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_HOME", str(tmp_path))
    build, batch = small_network("mobilenet")
    key = {"network": "mobilenet", "weights": "none", "input_size": [32, 32], "seed": 0}
    calibration = precisions.Calibration("sample-a", lambda: batch, len(batch))
    first = engines.create_engine("openvino", "int8", CPU, build, key, calibration)
    assert first.quantized_now and first.precision == "int8"
    features = first(batch)
    assert features.shape == (6, 1024) and np.isfinite(features).all()
    stored = sorted(os.listdir(tmp_path / "openvino"))
    assert len([name for name in stored if name.endswith("-int8.xml")]) == 1

    def fail():
        raise AssertionError("converted again")

    def no_images():
        raise AssertionError("calibrated again")

    second = engines.create_engine("openvino", "int8", CPU, fail,
                                   key, precisions.Calibration("sample-a", no_images, len(batch)))
    assert not second.quantized_now
    np.testing.assert_array_equal(second(batch), features)
    # Other calibration images are another int8 model.
    with pytest.raises(AssertionError, match="calibrated again"):
        engines.create_engine("openvino", "int8", CPU, fail, key,
                              precisions.Calibration("sample-b", no_images, len(batch)))
    with pytest.raises(engines.EngineError, match=r"Expected calibration images for "
                                                  r"--precision=int8. Received: none."):
        engines.create_engine("openvino", "int8", CPU, fail, key)


@pytest.fixture
def larger_dataset(tmp_path):
    root = tmp_path / "larger"
    write_folder_dataset(root / "train", per_class=10, seed=1)
    write_folder_dataset(root / "val", per_class=4, seed=2)
    return str(root)


@needs_openvino
@pytest.mark.slow
def test_int8_and_auto_caches_record_their_fidelity(larger_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_HOME", str(tmp_path / "home"))
    options = dict(network="mobilenet", dataset_dir=larger_dataset, weights="none", input_size=32,
                   engine="openvino", calibration_images=4, check_images=4)
    results = extraction.extract_features(output_dir=str(tmp_path / "int8"), precision="int8",
                                          **options)
    for result in results:
        metadata, _ = cache.read_metadata(result.path)
        recorded = precisions.Fidelity.from_attrs(cache.read_fidelity(result.path))
        assert metadata.precision == "int8" and not recorded.exact and recorded.images == 4
        assert -1.0 <= recorded.minimum <= recorded.p1 <= recorded.median <= 1.0
    store = tmp_path / "home" / "openvino"
    before = sorted(os.listdir(store))
    # 42 images >= 5 x (4 + 4): auto measures float32 and this CPU's candidates.
    auto = extraction.extract_features(output_dir=str(tmp_path / "auto"), precision="auto",
                                       **options)
    metadata, _ = cache.read_metadata(auto[0].path)
    recorded = precisions.Fidelity.from_attrs(cache.read_fidelity(auto[0].path))
    assert recorded.exact == (metadata.precision == "float32")
    measurements = os.listdir(store / "measurements")
    assert len(measurements) == 2
    # The int8 model quantized by the first run is the one auto measured: no new int8 model.
    after = sorted(os.listdir(store))
    assert [n for n in after if n.endswith("-int8.xml")] == [n for n in before
                                                             if n.endswith("-int8.xml")]
    # A later run reads the stored measurement and reuses the caches.
    again = extraction.extract_features(output_dir=str(tmp_path / "auto"), precision="auto",
                                        **options)
    assert all(result.reused for result in again)
    assert sorted(os.listdir(store / "measurements")) == sorted(measurements)


def test_fidelity_survives_parts_and_merges(tmp_path):
    from tests.test_cache import make_metadata  # pylint: disable=g-import-not-at-top

    metadata = make_metadata(precision="int8")
    measured_attrs = precisions.Fidelity(False, 0.9995, 0.991, 0.98, 64).to_attrs()
    parts = []
    for start, stop in ((0, 2), (2, 4)):
        part = str(tmp_path / f"part-{start}.h5")
        with cache.CacheWriter(part, metadata, ["a", "b"], (3,), samples=(start, stop, 4),
                               fidelity=measured_attrs) as writer:
            writer.append(np.ones((2, 3), np.float32), np.array([0, 1]),
                          [f"x{start}", f"x{start + 1}"])
            writer.commit()
        parts.append(part)
    copied = str(tmp_path / "copied.h5")
    cache.merge_parts(parts, copied, metadata, (0, 4, 4))
    assert cache.read_fidelity(copied) == measured_attrs
    given = str(tmp_path / "given.h5")
    cache.merge_parts(parts, given, metadata, (0, 4, 4), fidelity={"fidelity": "exact"})
    assert precisions.Fidelity.from_attrs(cache.read_fidelity(given)) == precisions.EXACT
    # The fidelity is a measurement, not a setting: the fingerprint does not cover it.
    assert cache.read_metadata(copied)[1] == cache.read_metadata(given)[1]


def test_precision_help_says_what_auto_does():
    from absl import flags  # pylint: disable=g-import-not-at-top

    from bottleneck_cache.bin import extract_features  # pylint: disable=g-import-not-at-top,unused-import

    text = " ".join(flags.FLAGS["precision"].help.split())
    assert f"median >= {precisions.GATE.min_median:g} and 1st percentile >= " \
        f"{precisions.GATE.min_p1:g}" in text
    assert "picks the fastest" in text and "int8: OpenVINO only" in text
    assert flags.FLAGS["calibration_images"].default == precisions.CALIBRATION_IMAGES
    assert flags.FLAGS["check_images"].default == precisions.CHECK_IMAGES


@pytest.mark.parametrize("requested, engine, device, needed", [
    ("float32", "openvino", CPU, False), ("auto", "keras", CPU, False), ("auto", "xla", GPU, False),
    ("auto", "openvino", CPU, True), ("bfloat16", "keras", CPU, True), ("int8", "openvino", CPU, True),
])
def test_samples_are_needed_only_to_measure(requested, engine, device, needed, tmp_path):
    assert precisions.needs_samples(requested, engine, device) == needed
    if not needed:
        selection = precisions.select(requested, engine, device, None, None, None, str(tmp_path))
        assert (selection.precision, selection.fidelity) == ("float32", precisions.EXACT)
