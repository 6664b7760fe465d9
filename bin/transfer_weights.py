"""Copies weights from one Keras model into another wherever the layers fit.

A layer of --target takes the weights of a layer of --source when both are of
the same class and all their weights have the same shapes. With --match=name
(the default) layers pair by name; with --match=position the i-th layer with
weights of each model pair up (pooling, Flatten, Dropout etc. are not counted).
Nested models are flattened to their layers. The target, with its new weights,
is written to --output (.keras); --target itself is not changed. A table says
which layers took weights and why the others did not.

Example: start a deeper CNN from a small one that shares its first layers

  transfer_weights --source=small_cnn.keras --target=deep_cnn.keras --output=deep_init.keras

Both models are .keras files (or legacy .h5), saved with model.save(). The
command fails, writing nothing, if no layer of the target can take weights.
"""

import sys

from absl import flags

from bottleneck_cache.bin import cli

_SOURCE = flags.DEFINE_string("source", None, "The .keras (or .h5) model to copy weights from.")
_TARGET = flags.DEFINE_string(
    "target", None, "The .keras (or .h5) model to copy weights into (not changed itself).")
_MATCH = flags.DEFINE_enum(
    "match", "name", ["name", "position"], "Pair layers by name, or by position among the "
    "layers with weights.")
# Shared flags, defined once in bin/cli.py.
cli.adopt(__name__, "output", "overwrite")


def main(argv):
    cli.start(argv)
    from bottleneck_cache.classifiers import transfer  # pylint: disable=g-import-not-at-top

    report = cli.call("transfer_weights", transfer.transfer_weights_file, _MATCH, cli.OVERWRITE,
                      source_path=_SOURCE.value, target_path=_TARGET.value,
                      output_path=cli.OUTPUT.value)
    print(transfer.format_report(report))
    print(f"Wrote {cli.OUTPUT.value}")


def run():
    """The `transfer_weights` console script."""
    cli.run(main, sys.modules[__name__], required=["source", "target", "output"],
            interrupted="--output was left as it was.")


if __name__ == "__main__":
    run()
