"""What every part of the fault suite shares: where things are, running commands, tables, data.

`Setup` says where the work folder, the console scripts and the synthetic dataset are; `Check` is
one measured behaviour (the summary line counts them by group); `Reference` is the uninterrupted
extraction that the other parts compare with. The rest are small helpers: run a command and judge
its error output, list a folder, print a table, write the synthetic class-folder dataset.
"""

import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Optional

import numpy as np
from PIL import Image

from bottleneck_cache.pipeline import cache

# Flags of every extraction measured here (the brief's settings).
BASE_FLAGS = ("--network=vgg16", "--weights=none", "--input_size=32", "--batch_size=4",
              "--checkpoint_every=8")
SPLITS = ("train", "validation")
NOBODY = 65534  # the unprivileged uid that runs the unreadable-folder checks as root


@dataclasses.dataclass(frozen=True)
class Setup:
    """Where things are: the work folder, the console scripts, the synthetic dataset."""

    workdir: str
    bin_dir: str
    timeout: float
    dataset: str
    checkpoint_every: int = 8

    def tool(self, name):
        return os.path.join(self.bin_dir, name)

    def extract_command(self, output_dir, *extra, dataset=None):
        return [self.tool("extract_features"), *BASE_FLAGS, f"--dataset_dir={dataset or self.dataset}",
                f"--output_dir={output_dir}", *extra]

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)


@dataclasses.dataclass
class Check:
    """One measured behaviour. `ok` is None when it could not be tested here."""

    group: str
    name: str
    ok: Optional[bool]
    detail: str = ""
    lost: int = 0
    duplicated: int = 0
    destroyed: int = 0  # user files changed or removed by the run


@dataclasses.dataclass(frozen=True)
class Reference:
    """The uninterrupted extraction every other run is compared with."""

    paths: dict
    caches: dict
    digests: dict
    parts: dict
    ready_s: float
    done_s: float
    exit_s: float


@dataclasses.dataclass(frozen=True)
class Completed:
    """A finished subprocess."""

    command: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float


# ------------------------------------------------------------------------------------------------
# Caches.


def cache_digest(c):
    """SHA-256 over everything a reader gets from a cache."""
    digest = hashlib.sha256()
    digest.update(repr(c.features.shape).encode())
    digest.update(np.ascontiguousarray(c.features, dtype=np.float32).tobytes())
    digest.update(np.asarray(c.labels, dtype=np.int64).tobytes())
    for values in (c.filenames, c.class_names, ["\t".join(s) for s in c.skipped], [c.fingerprint]):
        digest.update("\n".join(values).encode("utf-8") + b"\0")
    return digest.hexdigest()


def target_paths(output_dir, dataset, network="vgg16"):
    """`{split: path}` of the two caches an extraction of `dataset` writes into `output_dir`."""
    return {s: os.path.join(output_dir, cache.cache_filename(network, dataset, s)) for s in SPLITS}


def place_previous_caches(ref, folder):
    """Copies the reference caches into `folder` (an earlier valid pair for --overwrite runs)."""
    for path in ref.paths.values():
        shutil.copy2(path, os.path.join(folder, os.path.basename(path)))


# ------------------------------------------------------------------------------------------------
# Commands.


def run_command(command, cwd, timeout, env=None, prefix=()):
    """Runs a command to completion (killed after `timeout` seconds)."""
    start = time.monotonic()
    try:
        result = subprocess.run([*prefix, *command], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=timeout)
        code, out, err = result.returncode, result.stdout, result.stderr
    except subprocess.TimeoutExpired as error:
        code, out, err = -999, as_text(error.stdout), as_text(error.stderr) + f"\n[timed out after {timeout}s]"
    return Completed(list(command), code, out, err, time.monotonic() - start)


def as_text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def visible_lines(text):
    """What a terminal shows: progress-bar redraws (carriage returns) collapsed, blank lines dropped."""
    lines = []
    for line in text.splitlines():
        shown = [seg for seg in line.split("\r") if seg.strip()]
        if shown:
            lines.append(shown[-1].rstrip())
    return lines


def describe_exit(code):
    if code is not None and code < 0 and code != -999:
        return f"{code} ({signal.Signals(-code).name})"
    return str(code)


def clean_error(completed, command_name):
    """Returns (ok, message): exit 1, exactly one `<command>: error: ...` line, no traceback."""
    errors = [l for l in visible_lines(completed.stderr) if l.startswith(f"{command_name}: error:")]
    problems = []
    if completed.returncode != 1:
        problems.append(f"exit {describe_exit(completed.returncode)}")
    if len(errors) != 1:
        problems.append(f"{len(errors)} error lines")
    tracebacks = completed.stderr.count("Traceback (most recent call last)")
    if tracebacks:
        problems.append(f"{tracebacks} Python traceback(s) on stderr")
    message = errors[0] if errors else (visible_lines(completed.stderr) or ["<no stderr>"])[-1]
    return not problems, message if not problems else f"{'; '.join(problems)}: {message}"


def wait_until(predicate, process, timeout, interval=0.002):
    """Polls `predicate` until it holds, the process exits, or `timeout` passes; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return predicate()
        time.sleep(interval)
    return False


def parts_folders(output_dir):
    """The hidden `.parts` folders of an extraction under way in `output_dir`."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(n for n in os.listdir(output_dir) if n.endswith(".parts"))


def unprivileged_prefix(root, readable, unreadable):
    """The command prefix that runs a child as uid 65534, or (None, why) when it cannot be done.

    Returns:
        `((), None)` when not root (chmod 000 already stops this user), `(setpriv prefix, None)` as
        root when uid 65534 can read `readable` but not `unreadable`, else `(None, why)`.
    """
    if os.geteuid() != 0:
        return (), None
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None, "not testable as root (chmod 000 does not block root; setpriv not found)"
    prefix = (setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    sees = subprocess.run([*prefix, "ls", readable], capture_output=True).returncode == 0
    blocked = subprocess.run([*prefix, "ls", unreadable], capture_output=True).returncode != 0
    if not (sees and blocked):
        return None, (f"not testable as root: uid {NOBODY} cannot read the work folder {root} "
                      "(use a --workdir under /tmp)")
    return prefix, None


# ------------------------------------------------------------------------------------------------
# Folders.


def all_entries(folder):
    """Every file and folder below `folder` (hidden ones included), relative, sorted."""
    found = []
    for directory, subdirs, files in os.walk(folder):
        for name in subdirs + files:
            found.append(os.path.relpath(os.path.join(directory, name), folder))
    return sorted(found)


def temporary_files(folder):
    return [e for e in all_entries(folder) if e.endswith(".tmp")]


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(folder, e)) for e in all_entries(folder)
               if os.path.isfile(os.path.join(folder, e)))


# ------------------------------------------------------------------------------------------------
# Tables.


def shorten(text, width=110):
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_table(title, headers, rows, notes=()):
    widths = [max(len(str(v)) for v in column) for column in zip(headers, *rows)]
    print(f"\n== {title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    for note in notes:
        print(f"   {note}")
    sys.stdout.flush()


def verdict(ok):
    return {True: "ok", False: "FAIL", None: "n/a"}[ok]


# ------------------------------------------------------------------------------------------------
# Synthetic data.


def synthetic_pixels(rng, label, size=32):
    """A smooth per-class pattern plus noise, `(size, size, 3)` uint8."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(2 * np.pi * ((label + 1) * x + (c + 1) * y / 3 + c / 3)) for c in range(3)], -1)
    noise = rng.normal(0.0, 0.2, (size, size, 3))
    return np.clip((0.5 + 0.4 * base + noise) * 255, 0, 255).astype(np.uint8)


def make_dataset(root, rng, classes=3, train=40, val=10, size=32):
    """Writes `<root>/{train,val}/class_<c>/NNN.{jpg,png}`; returns `root`."""
    for split, count in (("train", train), ("val", val)):
        for label in range(classes):
            folder = os.path.join(root, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                image = Image.fromarray(synthetic_pixels(rng, label, size))
                if i % 2:
                    image.save(os.path.join(folder, f"{i:03d}.png"))
                else:
                    image.save(os.path.join(folder, f"{i:03d}.jpg"), quality=90)
    return root
