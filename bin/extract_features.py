"""Extracts bottleneck features from a frozen ImageNet network, once.

Runs a keras.applications network in inference mode over both splits of a
dataset and writes each split's features, labels, file names and class names to
an HDF5 cache in --output_dir:

  <network>_<dataset>[_<per_class>]_bottleneck_features_train.h5
  <network>_<dataset>_bottleneck_features_validation.h5

A cache already there with the same settings (fingerprint) is reused; one made
with other settings is replaced only with --overwrite.

Example:

  extract_features --network=vgg16 --dataset_dir=data/cifar10 --per_class=100

Datasets: a folder of class folders (optionally train/ + val/, validation/ or
test/), CIFAR-10 python batches, MNIST IDX files, the GTSRB layout, an .npz with
x/y, or Udacity pickles with --allow_pickle. Without --dataset_dir, the
scikit-learn digits. Train a head on the result with feature_extraction.
"""

import sys

from absl import flags

from bottleneck_cache.bin import cli
from bottleneck_cache.features import engines
from bottleneck_cache.features import precision as precisions
from bottleneck_cache.features import extraction
from bottleneck_cache.features import networks
from bottleneck_cache.pipeline import augment
from bottleneck_cache.pipeline import jobs

_NETWORK = flags.DEFINE_string(
    "network", None, f"Network: {', '.join(networks.list_networks())}; or its Keras class name "
    f"(MobileNetV2), or the lab's aliases {', '.join(sorted(networks.ALIASES))}.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Dataset name used in the cache file names. Default: the folder's name.")
_PER_CLASS = flags.DEFINE_integer(
    "per_class", None, "Keep this many training examples per class (seeded). Default: all.",
    lower_bound=1)
_POOLING = flags.DEFINE_enum(
    "pooling", "avg", networks.POOLINGS, "Global pooling of the last block's (or --layer's) "
    "spatial output.")
_LAYER = flags.DEFINE_string(
    "layer", None, "Take this layer's output instead, e.g. fc1 for VGG16's relu6 codes.")
_INPUT_SIZE = flags.DEFINE_integer(
    "input_size", None, "Resize images to this side. Default: the network's own.", lower_bound=1)
_ON_BAD_IMAGE = flags.DEFINE_enum(
    "on_bad_image", "skip", extraction.BAD_IMAGE_POLICIES, "What to do with an image that cannot "
    "be decoded: skip it (it is listed in the output and in the cache) or fail.")
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 1024, "Samples per checkpoint: a killed run, started again with the same "
    "flags, resumes from its last finished checkpoint.", lower_bound=1)
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", 1, "Split the work into this many shards, e.g. one per machine or array task.",
    lower_bound=1)
_SHARD_INDEX = flags.DEFINE_integer(
    "shard_index", 0, "With --num_shards: the shard to extract (0-based), into its own "
    "...-<index>-of-<num_shards>.h5 files.", lower_bound=0)
_MERGE = flags.DEFINE_boolean(
    "merge", False, "With --num_shards: merge the finished shard files into the two caches.")
_EXECUTOR = flags.DEFINE_enum(
    "executor", "local", jobs.EXECUTORS, "local: extract here. ray: run the shards as Ray tasks "
    "(one per GPU, or per CPU where there are none, unless --num_shards is given) and merge them; "
    "the output folder must be shared by the cluster's machines.")
_RAY_ADDRESS = flags.DEFINE_string(
    "ray_address", None, "With --executor=ray: the cluster's address (e.g. ray://head:10001 or "
    "auto). Default: a new local Ray instance.")
_ENGINE = flags.DEFINE_enum(
    "engine", "auto", engines.ENGINES, "What runs the network. auto: openvino on a CPU when it "
    "is installed (it is by default, where it has wheels), else keras; xla on GPUs.")
_PRECISION = flags.DEFINE_enum(
    "precision", "auto", engines.PRECISIONS, "Arithmetic of the network. int8: OpenVINO only, "
    "quantized by NNCF after calibration on --calibration_images training images. auto: with "
    "OpenVINO on a CPU, runs float32 and each lower precision the CPU has units for ("
    f"bfloat16: {'/'.join(precisions.BF16_FLAGS)}; int8: {'/'.join(precisions.INT8_FLAGS)}) on "
    "--check_images validation images and picks the fastest whose per-image cosine similarity to "
    f"float32 has median >= {precisions.GATE.min_median:g} and 1st percentile >= "
    f"{precisions.GATE.min_p1:g}; float32 with other engines, on GPUs, and on datasets with fewer "
    f"than {precisions.AUTO_MIN_FACTOR} x (calibration + check) images. The measurement is stored, "
    "so only the first run pays. The cache records the precision and its fidelity to float32.")
_CALIBRATION_IMAGES = flags.DEFINE_integer(
    "calibration_images", precisions.CALIBRATION_IMAGES, "For int8: training images (a sample "
    "seeded by --seed) the quantization is calibrated on.", lower_bound=1)
_CHECK_IMAGES = flags.DEFINE_integer(
    "check_images", precisions.CHECK_IMAGES, "For a precision other than float32: validation "
    "images (seeded by --seed) its fidelity to float32, and with auto its speed, is measured on.",
    lower_bound=1)
_AUGMENT_COPIES = flags.DEFINE_integer(
    "augment_copies", 0, "Also extract this many augmented views of each training image (marked "
    "as such in the cache and tied to their image; validation images are never augmented).",
    lower_bound=0)
_AUGMENTATIONS = flags.DEFINE_string(
    "augmentations", "flip,crop,color", "With --augment_copies: the transforms of each view, a "
    f"comma list of {', '.join(augment.TRANSFORMS)} (seeded by --seed).")
# Shared flags, defined once in bin/cli.py.
cli.adopt(__name__, "batch_size", "seed", "output_dir", "weights", "overwrite", "dataset_dir",
          "dataset_format", "allow_pickle", "validation_split")


def main(argv):
    cli.start(argv)
    # Every flag is named as the ExtractionSettings field it sets.
    results = cli.call(
        "extract_features", extraction.extract_features,
        _NETWORK, cli.DATASET_DIR, _DATASET, _PER_CLASS, cli.BATCH_SIZE, _POOLING, _LAYER,
        _INPUT_SIZE, cli.OVERWRITE, cli.DATASET_FORMAT, cli.VALIDATION_SPLIT, cli.SEED,
        cli.ALLOW_PICKLE, _ON_BAD_IMAGE, _NUM_SHARDS, _SHARD_INDEX, _MERGE, _CHECKPOINT_EVERY,
        _EXECUTOR, _RAY_ADDRESS, _ENGINE, _PRECISION, _CALIBRATION_IMAGES, _CHECK_IMAGES,
        _AUGMENT_COPIES, _AUGMENTATIONS, cli.OUTPUT_DIR, cli.WEIGHTS)
    for result in results:
        state = "reused" if result.reused else "written"
        skipped = f", {result.num_skipped} skipped" if result.num_skipped else ""
        print(f"{result.split}: {result.path} ({result.num_samples} samples{skipped}, {state})")


def run():
    """The `extract_features` console script."""
    cli.run(main, sys.modules[__name__], required=["network"],
            interrupted="Finished checkpoints are kept beside the caches; run the same command "
            "again to resume from them.")


if __name__ == "__main__":
    run()
