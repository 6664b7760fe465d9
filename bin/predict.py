"""Classifies images with a head trained by feature_extraction.

Rebuilds the frozen network the head's features came from (network, weights,
layer, pooling, input size, as recorded in the head folder's
head_config.json), decodes and preprocesses each image exactly as
extract_features does, runs the network and the head, and prints each image's
path and its top classes with their probabilities. Folders are searched
recursively for image files. An image that cannot be decoded is skipped with
a warning and listed; the command fails only if no image could be read.

Example:

  predict --head_dir=runs/vgg16_cifar10_100_softmax photos/ extra/cat.jpg

Images and folders may be given as arguments, with --inputs, or both.

With --dump_dir, up to --dump_count of the images are also written there as
PNG files named after their top-5 classes, e.g. "[cat dog deer frog bird].png".

A head whose features were extracted with --weights=PATH needs the same file
here (--weights=PATH); it is checked by its SHA-256.
"""

import sys

from absl import app
from absl import flags

from bottleneck_cache.bin import cli

_INPUTS = flags.DEFINE_list(
    "inputs", None, "Comma-separated image files and/or folders (searched recursively); they "
    "may also be given as arguments after the flags.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes to print per image.", lower_bound=1)
_DUMP_DIR = flags.DEFINE_string(
    "dump_dir", None, "Also write images there as PNG, named after their top-5 classes: "
    "'[c1 c2 c3 c4 c5].png' (' (2)' etc. when a name is taken).")
_DUMP_COUNT = flags.DEFINE_integer(
    "dump_count", 25, "Images to write to --dump_dir at most.", lower_bound=0)
# Shared flags, defined once in bin/cli.py.
cli.adopt(__name__, "batch_size", "head_dir", "weights")


def main(argv):
    inputs = [*(_INPUTS.value or []), *argv[1:]]  # Paths as arguments, as users expect.
    if not inputs:
        raise app.UsageError("Expected images or folders to classify, as arguments or with "
                             "--inputs. Received: none")
    from bottleneck_cache.classifiers import predict  # pylint: disable=g-import-not-at-top

    results = cli.call("predict", predict.predict, cli.HEAD_DIR, cli.WEIGHTS, _TOP_K, _DUMP_DIR,
                       _DUMP_COUNT, cli.BATCH_SIZE, inputs=inputs)
    for result in results:
        print(predict.format_prediction(result))
    skipped = [result for result in results if result.skipped]
    if skipped:
        print(f"Skipped {len(skipped)} of {len(results)} images that could not be decoded: "
              f"{', '.join(result.path for result in skipped)}")


def run():
    """The `predict` console script."""
    cli.run(main, sys.modules[__name__], required=["head_dir"],
            interrupted="Nothing was written but the images already in --dump_dir.")


if __name__ == "__main__":
    run()
