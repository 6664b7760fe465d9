"""The demo: both stages on scikit-learn's bundled handwritten digits, on any machine.

VGG16 at input 32 on the 1,797 digits, as in the seeds' first example: the
ImageNet weights where Keras can download them (or finds them in its cache),
else the same pipeline with seeded random weights, said in one line and marked
in every figure. VGG16 is the demo network because both runs mean something:
its random convolutions still separate the digits (random MobileNetV2 features
collapse to about 1e-12, and every head is at chance).
"""

import dataclasses
import os

from bottleneck_cache.classifiers import batch
from bottleneck_cache.features import extraction
from bottleneck_cache.features import networks

HEADS = ("logreg", "softmax")


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo did.

    Attributes:
        weights: the weights the features were extracted with: `"imagenet"`,
            `"none"` (seeded random, after a failed download) or a file path.
        fallback: why it fell back to random weights, or None.
        caches: the training and validation cache paths.
        accuracies: head name -> validation accuracy.
        output_dir: the folder holding the caches and the heads.
    """

    weights: str
    fallback: str
    caches: tuple
    accuracies: dict
    output_dir: str


def _extract(network, weights, input_size, output_dir):
    results = extraction.extract_features(network, weights=weights, input_size=input_size,
                                          output_dir=output_dir)
    return tuple(result.path for result in results)


def run_demo(output_dir="demo_output", network="vgg16", weights="imagenet", input_size=32,
             log=print):
    """Extracts the digits' features and trains the demo heads on them.

    Args:
        output_dir: where the caches go, with the head folders in `heads/`; the
            random-weight run writes to its `random_weights/` subfolder, so that
            its caches never meet those of real weights.
        network: a registry name.
        weights: `"imagenet"`, `"none"` or a weights file.
        input_size: the side images are resized to.
        log: where the fallback line goes.

    Returns:
        A `DemoResult`.

    Raises:
        ValueError: bad arguments, or an output folder this tool did not write.
    """
    fallback = None
    try:
        caches = _extract(network, weights, input_size, output_dir)
    except networks.WeightsDownloadError as error:
        fallback = str(error).split(":", 1)[0]
        log(f"{fallback} (no internet?): running the same pipeline with seeded random weights "
            "instead; the accuracies below are random-weight figures.")
        weights, output_dir = "none", os.path.join(output_dir, "random_weights")
        caches = _extract(network, weights, input_size, output_dir)
    rows, _ = batch.train_heads(caches[0], caches[1], head=HEADS,
                                output_dir=os.path.join(output_dir, "heads"), log=lambda line: None)
    accuracies = {row["head"]: row["val_accuracy"] for row in rows}
    return DemoResult(weights, fallback, caches, accuracies, output_dir)


def format_result(result):
    """The demo's closing lines: one accuracy per head, marked when the weights were random."""
    kind = {"imagenet": "ImageNet weights", "none": "random weights"}.get(
        result.weights, f"weights from {result.weights}")
    lines = [f"val_accuracy {head:8s} {accuracy:.4f}  ({kind})"
             for head, accuracy in result.accuracies.items()]
    lines.append(f"Caches and heads in {result.output_dir}/")
    return "\n".join(lines)
