"""What the command-line entry points share: quiet start-up and clean errors."""

import atexit
import os
import re
import signal
import sys
import threading
import warnings

from absl import app
from absl import flags
from absl import logging

from bottleneck_cache.pipeline import datasets

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
    "--output_dir), holding head_config.json and head.npz (or an older head.keras or "
    "head.joblib).")
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
    "overwrite", False, "Replace an earlier output of this tool: caches made with other settings "
    "(extract_features), an existing --output_dir (fine_tune), --output (export_model, "
    "transfer_weights) or --saved_model_dir (export_model). A path this tool did not write is "
    "never replaced.")
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
    "epochs", None, "Training epochs. Default: 50 (feature_extraction's softmax and mlp heads), 5 "
    "(fine_tune).", lower_bound=1)
LEARNING_RATE = flags.DEFINE_list(
    "learning_rate", None, "Adam's learning rate. Default: 0.001 (feature_extraction, where a "
    "comma-separated list sweeps), 1e-5 (fine_tune, one value).")


def adopt(module_name, *names):
    """Lists shared flags (those defined here) in a command's --help, as `flags.declare_key_flag` does.

    Args:
        module_name: the command module's `__name__`.
        *names: the shared flags the command takes.
    """
    if module_name == "__main__":  # Under `python -m`, absl names the main module after argv[0].
        module_name = sys.argv[0]
    for name in names:
        flags.FLAGS.register_key_flag_for_module(module_name, flags.FLAGS[name])


def start(argv):
    """What every command's `main` does first: refuse stray arguments.

    Raises:
        app.UsageError: positional arguments were given (the commands take flags only).
    """
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}. Expected "
                             "flags only (--name=value)")


def call(command, function, *flag_holders, **kwargs):
    """Calls `function` with flag values and `kwargs`; a bad-input error is one message and exit 1.

    Args:
        command: the command's name, for the message.
        function: the library function the command runs.
        *flag_holders: `FlagHolder`s named as `function`'s arguments: each
            flag's value is passed as the argument of its name; a flag left at
            None leaves the argument to `function`'s own default (one home for
            each default).
        **kwargs: its other arguments (and any that differ from a flag's value,
            e.g. a default that depends on the command).

    Returns:
        What `function` returned.

    Raises:
        SystemExit: `function` raised `ValueError` (bad flags, dataset, network
            or cache) or `OSError` (e.g. a full disk); nothing was left half-written.
    """
    kwargs = {**{holder.name: holder.value for holder in flag_holders if holder.value is not None},
              **kwargs}
    try:
        return function(**kwargs)
    except (ValueError, OSError) as error:
        logging.debug("%s failed", command, exc_info=True)
        print(f"{command}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption or time limit), unwinding like Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame):
    del frame  # Unused.
    raise Interrupted(signum)


# C++ log lines TensorFlow and its libraries print on every run (oneDNN notices, "no CUDA
# drivers", the cuInit error of a machine without a GPU, absl's pre-initialization warning).
# They go straight to file descriptor 2, past Python, and no environment variable silences
# all of them (TF_CPP_MIN_LOG_LEVEL does not reach the lines logged before absl starts), so
# a thread filters what reaches the terminal. Python's own log lines (`….py:N]`) pass.
_NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} [\d:. ]+\d+ [\w./-]+\.(cc|h|cpp):\d+\]"
    rb"|E\d{4} [\d:. ]+\d+ [\w./-]+\.(cc|h|cpp):\d+\] .*(cuInit|CUDA|cuda))")
# Set to 1 to see them, and library warnings, without --verbosity.
VERBOSE_ENV = "BOTTLENECK_CACHE_VERBOSE"


def _forward(read_fd, write_fd):
    """Copies `read_fd` to `write_fd`, leaving out whole lines of native start-up noise."""
    pending = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = [line + b"\n" for line in lines if not _NATIVE_NOISE.match(line.lstrip(b"\r"))]
        # A partial line that cannot be noise (a progress bar's "\r…") goes out at once.
        if pending and not re.match(rb"^(W|I|E|WA|WAR|WARN|WARNI|WARNIN|WARNING|WARNING:|[IWE]\d)",
                                    pending):
            kept.append(pending)
            pending = b""
        if kept:
            os.write(write_fd, b"".join(kept))
    if pending:
        os.write(write_fd, pending)


def quiet_start_up():
    """Keeps TensorFlow's native start-up lines and library warnings from the user.

    Unless `--verbosity` is 1 or more (`-v 1`) or `$BOTTLENECK_CACHE_VERBOSE` is
    set: then everything is shown as it comes. Python warnings go to the debug
    log instead of the terminal.
    """
    if logging.get_verbosity() >= 1 or os.environ.get(VERBOSE_ENV):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.showwarning = (lambda message, category, filename, lineno, file=None, line=None:
                            logging.debug("%s:%d: %s: %s", filename, lineno, category.__name__,
                                          message))
    sys.stderr.flush()
    terminal = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_forward, args=(read_fd, terminal), daemon=True)
    thread.start()

    def restore():
        sys.stderr.flush()
        os.dup2(terminal, 2)  # Closes the pipe's last writer here: the thread reads to the end.
        thread.join(timeout=2)

    atexit.register(restore)


def _with_clean_exits(main, command, interrupted):
    """Wraps `main`: quiet start-up, one line for Ctrl-C / SIGTERM, concise usage errors."""

    def wrapped(argv):
        quiet_start_up()
        try:
            return main(argv)
        except app.UsageError as error:
            print(f"{command}: error: {error}. Run {command} --help to see its usage.",
                  file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt as error:
            signum = getattr(error, "signum", signal.SIGINT)
            what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
            print(f"{command}: {what}. {interrupted}", file=sys.stderr)
            raise SystemExit(128 + signum) from None

    return wrapped


VERSION = flags.DEFINE_boolean("version", False, "Print the version of bottleneck-cache and exit.")


def package_version():
    """The installed version of bottleneck-cache, or "unknown" when run from a bare checkout."""
    import importlib.metadata  # pylint: disable=g-import-not-at-top

    try:
        return importlib.metadata.version("bottleneck-cache")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run(main, module, required,
        interrupted="Outputs are written only when complete: nothing was left half-written."):
    """Runs a command's `main` under absl, as `python -m bottleneck_cache.bin.X` or as a console script.

    A console script's `__main__` is a generated stub, so absl's `--help` would
    show neither the command's docstring nor its flags; they are lent to it here.
    Ctrl-C and SIGTERM end the command with one line, `interrupted`, and exit
    130 / 143; a usage error (e.g. a stray argument) is one line and exit 1.

    Args:
        main: the command's `main(argv)`.
        module: the command's module.
        required: names of the flags that must be given.
        interrupted: what an interrupt leaves behind and how to go on, e.g.
            "Finished checkpoints were kept; run the same command to resume."
    """
    # A scheduler's SIGTERM (preemption, a time limit) unwinds like Ctrl-C, so that
    # temporary files are removed and finished caches stay as they are.
    signal.signal(signal.SIGTERM, _raise_interrupted)
    main_module = sys.modules["__main__"]
    if main_module is not module:
        main_module.__doc__ = module.__doc__
        for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    flags.FLAGS.register_key_flag_for_module(module.__name__, flags.FLAGS["version"])
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS["version"])
    command = os.path.splitext(os.path.basename(module.__file__))[0]  # Also under `python -m`.
    # What users expect of a command line: -h as --help, --version without the required flags.
    sys.argv = [sys.argv[0], *("--help" if arg == "-h" else arg for arg in sys.argv[1:])]
    if "--version" in sys.argv[1:]:
        print(f"{command} (bottleneck-cache) {package_version()}")
        raise SystemExit(0)
    flags.mark_flags_as_required(required)
    app.run(_with_clean_exits(main, command, interrupted))
