"""What the command-line entry points share: quiet start-up and clean errors."""

import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging

from pipeline import datasets

# Flags both commands take. absl keeps one flag per name in a process, so they are
# defined here once; each command adopts them as its own (they show in --help).
BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Samples per batch. Default: chosen for the input size and device "
    "(extract_features: 128 images per network call up to 64x64, 64 up to 128x128, else 32; "
    "twice that per GPU), 256 features per gradient step (feature_extraction), 32 images "
    "(predict, export_model).", lower_bound=1)
WEIGHTS = flags.DEFINE_string(
    "weights", None, "Network weights. extract_features: 'imagenet' (the default), 'none' "
    "(random, seeded by --seed), or a path to a Keras weights file. predict, export_model: for "
    "a head extracted with --weights=PATH, the same file (checked by SHA-256).")
HEAD_DIR = flags.DEFINE_string(
    "head_dir", None, "predict, export_model: a head folder written by feature_extraction (its "
    "--output_dir), holding head_config.json and head.keras or head.joblib.")
SEED = flags.DEFINE_integer(
    "seed", 0, "Random seed: --per_class and --validation_split (extract_features), "
    "initialization and shuffling (feature_extraction).", lower_bound=0)
OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Output folder. Default: the current folder (extract_features), "
    "runs/<network>_<dataset>[_<N>]_<head> (feature_extraction), <head_dir>_fine_tuned "
    "(fine_tune).")
OUTPUT = flags.DEFINE_string(
    "output", None, "The .keras file to write (export_model, transfer_weights).")
OVERWRITE = flags.DEFINE_boolean(
    "overwrite", False, "Replace what is there: caches made with other settings "
    "(extract_features), an existing --output_dir (fine_tune) or --output (transfer_weights).")
DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None, "Dataset folder or file (for fine_tune: the one given to "
    "extract_features). Default: scikit-learn's bundled digits.")
DATASET_FORMAT = flags.DEFINE_enum(
    "dataset_format", None, datasets.FORMATS, "Dataset layout. Default: detected.")
ALLOW_PICKLE = flags.DEFINE_boolean(
    "allow_pickle", False, "Allow reading pickle files (CIFAR-10 python batches, Udacity "
    "pickles). Loading a pickle can run code: use only files you trust.")
VALIDATION_SPLIT = flags.DEFINE_float(
    "validation_split", 0.2, "Fraction held out for validation when the dataset has no "
    "validation split (for fine_tune: the value given to extract_features).",
    lower_bound=0.0, upper_bound=1.0)
EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Training epochs. Default: 50 (feature_extraction's Keras heads), 5 "
    "(fine_tune).", lower_bound=1)
LEARNING_RATE = flags.DEFINE_list(
    "learning_rate", None, "Adam's learning rate. Default: 0.001 (feature_extraction, where a "
    "comma-separated list sweeps), 1e-5 (fine_tune, one value).")


def start(argv):
    """What every command's `main` does first: refuse stray arguments, quiet TensorFlow.

    Raises:
        app.UsageError: positional arguments were given (the commands take flags only).
    """
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    # Hides TensorFlow's C++ start-up chatter unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def call(command, function, **kwargs):
    """Calls `function(**kwargs)`, turning a bad-input error into one message and exit 1.

    Args:
        command: the command's name, for the message.
        function: the library function the command runs.
        **kwargs: its arguments.

    Returns:
        What `function` returned.

    Raises:
        SystemExit: `function` raised `ValueError` (bad flags, dataset, network
            or cache) or `OSError` (e.g. a full disk); nothing was left half-written.
    """
    try:
        return function(**kwargs)
    except (ValueError, OSError) as error:
        logging.debug("%s failed", command, exc_info=True)
        print(f"{command}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def _exit_on_sigterm(signum, frame):
    del frame  # Unused.
    raise SystemExit(128 + signum)


def run(main, module, required):
    """Runs a command's `main` under absl, as `python -m bin.X` or as a console script.

    A console script's `__main__` is a generated stub, so absl's `--help` would
    show neither the command's docstring nor its flags; they are lent to it here.

    Args:
        main: the command's `main(argv)`.
        module: the command's module.
        required: names of the flags that must be given.
    """
    # A scheduler's SIGTERM (preemption, a time limit) unwinds like Ctrl-C, so that
    # temporary files are removed and finished caches stay as they are.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main_module = sys.modules["__main__"]
    if main_module is not module:
        main_module.__doc__ = module.__doc__
        for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    flags.mark_flags_as_required(required)
    app.run(main)
