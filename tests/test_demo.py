"""The demo (`make demo`): both stages on the bundled digits, with or without internet."""

import os

import pytest

from bottleneck_cache.classifiers import demo


@pytest.mark.slow
def test_the_demo_completes_on_any_machine(tmp_path, monkeypatch):
    # An empty Keras cache: without internet the ImageNet download fails and the demo falls back.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    lines = []
    result = demo.run_demo(output_dir=str(tmp_path / "demo"), log=lines.append)
    if result.fallback:
        assert result.weights == "none"
        assert lines == [f"{result.fallback} (no internet?): running the same pipeline with seeded "
                         "random weights instead; the accuracies below are random-weight figures."]
        assert result.fallback == "Could not download the ImageNet weights for vgg16"
        assert result.output_dir == str(tmp_path / "demo" / "random_weights")
        assert "(random weights)" in demo.format_result(result)
    else:
        assert result.weights == "imagenet" and not lines
        assert "(ImageNet weights)" in demo.format_result(result)
    # VGG16's features separate the digits even with random weights (0.989 / 0.96 measured).
    assert result.accuracies["logreg"] > 0.9 and result.accuracies["softmax"] > 0.8
    assert all(os.path.isfile(path) for path in result.caches)
    # Run again: the caches are reused and the head folders, its own, replaced.
    again = demo.run_demo(output_dir=str(tmp_path / "demo"), log=lines.append)
    assert again.accuracies == result.accuracies
