"""The demo: both stages on scikit-learn's bundled handwritten digits (`make demo`).

Extracts VGG16 features of the 1,797 digits at input 32 and trains a logreg
and a softmax head on them, then prints their validation accuracies. Uses the
ImageNet weights where Keras can download them (or has them in its cache);
on a machine without internet it says so in one line and runs the same
pipeline with seeded random weights, marking every accuracy as such.

Example:

  python -m bottleneck_cache.bin.demo --output_dir=demo_output
"""

import sys

from absl import flags

from bottleneck_cache.bin import cli

_NETWORK = flags.DEFINE_string("network", "vgg16", "The network of the demo.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 32, "The side images are resized to.",
                                   lower_bound=1)
# Shared flags, defined once in bin/cli.py.
cli.adopt(__name__, "weights", "output_dir")


def main(argv):
    cli.start(argv)
    from bottleneck_cache.classifiers import demo  # pylint: disable=g-import-not-at-top

    result = cli.call("demo", demo.run_demo, cli.OUTPUT_DIR, _NETWORK, cli.WEIGHTS, _INPUT_SIZE)
    print(demo.format_result(result))


def run():
    """`python -m bottleneck_cache.bin.demo`."""
    cli.run(main, sys.modules[__name__], required=[])


if __name__ == "__main__":
    run()
