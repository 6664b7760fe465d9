"""Exports a head trained by feature_extraction, with its frozen network, as one Keras model.

The model written to --output (.keras) takes raw images of any size, values
0-255, shaped (batch, height, width, 3); inside the graph it resizes them
(bilinear) to the head's input size, applies the network's own
preprocess_input, runs the frozen network and the head, and returns the class
probabilities. The class names are stored in the file. A logreg head is
converted to an exactly equivalent Dense softmax layer.

Example:

  export_model --head_dir=runs/vgg16_cifar10_100_softmax --output=cifar10.keras

Load it in Python (importing bottleneck_cache.classifiers.export registers the model's two
custom layers, so no custom_objects are needed):

  import keras
  from bottleneck_cache.classifiers import export
  model = keras.models.load_model("cifar10.keras")
  names = export.class_names(model)

With --saved_model_dir, a TensorFlow SavedModel is written there too (endpoint
"serve"), for TF Serving or converters; it needs no Python code of this package.
A head extracted with --weights=PATH needs the same file here (--weights=PATH).
An existing --output (a .keras file) or --saved_model_dir (a SavedModel folder
written by export_model) is replaced only with --overwrite; anything else there
is refused.
"""

import sys

from absl import flags

from bottleneck_cache.bin import cli

_SAVED_MODEL_DIR = flags.DEFINE_string(
    "saved_model_dir", None, "Also write a TensorFlow SavedModel (for serving) to this folder.")
# Shared flags, defined once in bin/cli.py.
cli.adopt(__name__, "output", "head_dir", "weights", "overwrite")


def main(argv):
    cli.start(argv)
    from bottleneck_cache.classifiers import predict  # pylint: disable=g-import-not-at-top

    # A wrong --head_dir fails before TensorFlow loads (classifiers.export imports Keras).
    cli.call("export_model", predict.read_head_config, head_dir=cli.HEAD_DIR.value)
    from bottleneck_cache.classifiers import export  # pylint: disable=g-import-not-at-top

    result = cli.call("export_model", export.export_model, cli.HEAD_DIR, cli.OUTPUT, _SAVED_MODEL_DIR,
                      cli.WEIGHTS, cli.OVERWRITE)
    print(export.format_summary(result))


def run():
    """The `export_model` console script."""
    cli.run(main, sys.modules[__name__], required=["head_dir", "output"],
            interrupted="--output and --saved_model_dir were left as they were.")


if __name__ == "__main__":
    run()
