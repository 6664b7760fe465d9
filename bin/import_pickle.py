"""Converts the Udacity lab's bottleneck pickles into regular HDF5 caches.

The lab shipped precomputed features as pickles named
{network}_{dataset}[_{N}]_bottleneck_features_{train,validation}.p, each a dict
{'features': (N, 1, 1, D) float32, 'labels': (N,) or (N, 1)}. feature_extraction
reads them as they are; this command writes each one as a cache (same name,
.h5) that every command, and h5py itself, can read. The network, dataset,
per-class count and split come from the file name; what a pickle does not say
(weights, layer, pooling, input size, preprocessing) is recorded as "unknown
(Udacity lab pickle)". Features are flattened to (N, D), labels made 1-D; class
names are the CIFAR-10 or GTSRB names for cifar10 and traffic, else 0..C-1.

Pickles are read with a data-only unpickler: a file that would call anything
but NumPy's array constructors is refused before any of it runs, so no
--allow_pickle is needed (or taken).

Example:

  import_pickle \
    --pickles=vgg_cifar10_100_bottleneck_features_train.p,vgg_cifar10_bottleneck_features_validation.p

  feature_extraction --training_file=vgg_cifar10_100_bottleneck_features_train.h5 \
    --validation_file=vgg_cifar10_bottleneck_features_validation.h5

Caches are written beside the pickles unless --output_dir is given. An existing
cache is replaced only with --overwrite; a file there that is not a cache never.
"""

import sys

from absl import flags

from bottleneck_cache.bin import cli

_PICKLES = flags.DEFINE_string(
    "pickles", None, "Lab pickles to convert: paths or globs, comma-separated (e.g. "
    "'lab/*_bottleneck_features_*.p').")
# Shared flags, defined once in bin/cli.py.
cli.adopt(__name__, "output_dir", "overwrite")


def main(argv):
    cli.start(argv)
    from bottleneck_cache.classifiers import batch  # pylint: disable=g-import-not-at-top
    from bottleneck_cache.pipeline import lab_pickles  # pylint: disable=g-import-not-at-top

    paths = cli.call("import_pickle", batch.expand_files, patterns=_PICKLES.value, flag="pickles")
    results = cli.call("import_pickle", lab_pickles.import_lab_pickles, cli.OUTPUT_DIR, cli.OVERWRITE,
                       paths=paths)
    print(lab_pickles.format_summary(results))


def run():
    """The `import_pickle` console script."""
    cli.run(main, sys.modules[__name__], required=["pickles"])


if __name__ == "__main__":
    run()
