"""Fault injection for bottleneck-cache: kills, a full disk, corrupt caches, readers and bad inputs.

Builds a tiny synthetic class-folder dataset (3 classes x 40 train + 10 validation images, 32x32 JPEG
and PNG) in a temporary folder and drives the `extract_features` and `feature_extraction` console
scripts as subprocesses, the way a user or a scheduler would:

1. Reference: one uninterrupted extraction (VGG16, random seeded weights, 32x32 input, batch 4,
   a checkpoint every 8 samples), with a reader process polling the target caches meanwhile.
2. Kills: `--kills` runs SIGKILLed at seeded random moments between TensorFlow's start-up (the
   hidden parts folder appears) and the end of the work. Each waits for a random number of finished
   parts or merges (stratified over the whole run; the first kill always within the first part),
   then a random fraction of one part's time, so that kills land before the first part, while a
   part or a merge is written, between parts and between splits. One more SIGKILL is aimed at the
   moment the training cache appears (between its merge and the removal of its parts), and
   `--sigterms` runs get a SIGTERM instead (expected: exit 143, no temporary files left). Each is
   followed by the same command run to completion, whose caches are compared with the reference
   (features bit for bit, labels, file names, skipped list, fingerprint; rows lost, duplicated).
   `--jobs` trials run at once (default 2, i.e. at most two extractions at a time; 1 for one).
3. Readers: 4 processes reading one cache at once; a reader polling the caches while an
   `--overwrite` extraction replaces them (it must see the old or the new file, never another).
4. Disk full: a small tmpfs (as root; else RLIMIT_FSIZE in the child) holding a previous valid pair
   of caches; an extraction with other settings and --overwrite that cannot fit must exit non-zero
   with one `extract_features: error: ...` line, no traceback, no temporary files, and the previous
   caches intact. When the disk fills during the merge, the run is repeated after making room.
5. Corrupt caches: truncated, bytes flipped in the middle of the file, one bit flipped in the
   feature data, an attribute deleted; `read_cache` must raise `CacheError` and `feature_extraction`
   must exit 1 with one message and write nothing. (Flipped bytes that no reader ever gets, such as
   unused chunk space, count as harmless when every value reads back identical.)
6. Bad inputs: truncated JPEG, zero-byte file, non-image file, PNG named .jpg, 16-bit PNG, CMYK
   JPEG, RGBA, palette and grey images in one dataset (decodable ones kept, the others listed in
   `Cache.skipped`); an empty class folder; an unreadable class folder (as root, run as uid 65534
   with `setpriv`); a corrupted cache, a truncated cache and a mismatched train/validation pair.
7. Issue 10 (`benchmarks/faults/user_files.py`): the bad inputs of `tests/bad_inputs.py` (dangling
   links and link loops, non-UTF-8 names, one class, a class too small for both splits, split
   folders named training/ and validation/ or beside a stray folder, bad --augmentations, .npz
   values outside 0..255, an empty --network=, a cache estimated above 1 GiB) and the output
   folders a command must refuse without touching them (the caches' folder, `.`, a file, a folder
   of user files, an existing --output, a read-only folder) for feature_extraction, export_model,
   predict and extract_features.

Before each run of parts 6 and 7, every user file it could touch (its inputs, and what was at its
output location) is snapshotted (size, mtime, SHA-256); a file changed or removed afterwards is
counted as destroyed.

Prints one table per part and ends with a summary line such as

    faults survived: 15/15, bad inputs handled: 32/32, output folders refused: 9/9, rows lost: 0,
    rows duplicated: 0, ..., user files destroyed: 0

and exits 1 if any check failed. About 4 to 5 minutes on 2 CPUs (--jobs 2); `--parts=7` runs
part 7 alone (about 2 minutes). Nothing outside the
work folder is touched; it is removed at the end unless --keep. As root, a tmpfs is mounted inside
it (and unmounted) for the disk-full part, and the unreadable-folder check runs its child as uid
65534 with setpriv.

Run from the repository root:

    .venv/bin/python benchmarks/fault_injection.py [--workdir DIR] [--kills 10] [--sigterms 2]
        [--jobs 2] [--seed 0] [--parts 1-7] [--keep]
"""

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import math
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.faults import user_files  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests import bad_inputs  # pylint: disable=g-import-not-at-top,wrong-import-position

# Flags of every extraction measured here (the brief's settings).
BASE_FLAGS = ("--network=vgg16", "--weights=none", "--input_size=32", "--batch_size=4",
              "--checkpoint_every=8")
SPLITS = ("train", "validation")
NOBODY = 65534


# ------------------------------------------------------------------------------------------------
# Set-up and small helpers.


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


def cache_module():
    """Imports `pipeline.cache`, from the installed package or from this checkout."""
    try:
        from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from bottleneck_cache.pipeline import cache  # pylint: disable=g-import-not-at-top
    return cache


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
    cache = cache_module()
    return {s: os.path.join(output_dir, cache.cache_filename(network, dataset, s)) for s in SPLITS}


def run_command(command, cwd, timeout, env=None, prefix=()):
    """Runs a command to completion (killed after `timeout` seconds)."""
    start = time.monotonic()
    try:
        result = subprocess.run([*prefix, *command], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=timeout)
        code, out, err = result.returncode, result.stdout, result.stderr
    except subprocess.TimeoutExpired as error:
        code, out, err = -999, _text(error.stdout), _text(error.stderr) + f"\n[timed out after {timeout}s]"
    return Completed(list(command), code, out, err, time.monotonic() - start)


def _text(value):
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


def make_dataset(root, rng, classes=3, train=40, val=10, size=32, empty_classes=()):
    """Writes `<root>/{train,val}/<class>/NNN.{jpg,png}`; returns `root`."""
    names = [f"class_{c}" for c in range(classes)] + list(empty_classes)
    for split, count in (("train", train), ("val", val)):
        for label, name in enumerate(names):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            if name in empty_classes:
                continue
            for i in range(count):
                image = Image.fromarray(synthetic_pixels(rng, label, size))
                if i % 2:
                    image.save(os.path.join(folder, f"{i:03d}.png"))
                else:
                    image.save(os.path.join(folder, f"{i:03d}.jpg"), quality=90)
    return root


def _jpeg_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_truncated_jpeg(path, pixels):
    data = _jpeg_bytes(np.tile(pixels, (2, 2, 1)))
    with open(path, "wb") as f:
        f.write(data[: len(data) * 6 // 10])


def write_zero_bytes(path, pixels):
    del pixels
    open(path, "wb").close()


def write_text(path, pixels):
    del pixels
    with open(path, "w", encoding="utf-8") as f:
        f.write("This is a README that someone saved with an image extension.\n" * 20)


def write_png_named_jpg(path, pixels):
    Image.fromarray(pixels).save(path, format="PNG")


def write_png16(path, pixels):
    grey = pixels.astype(np.uint16).mean(axis=-1).astype(np.uint16) * 257
    Image.fromarray(grey).save(path, format="PNG")


def write_cmyk_jpeg(path, pixels):
    Image.fromarray(pixels).convert("CMYK").save(path, format="JPEG", quality=90)


def write_rgba(path, pixels):
    alpha = np.linspace(0, 255, pixels.shape[0] * pixels.shape[1]).reshape(pixels.shape[:2])
    Image.fromarray(np.dstack([pixels, alpha.astype(np.uint8)])).save(path, format="PNG")


def write_palette(path, pixels):
    image = Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.save(path, format="PNG", transparency=0)


def write_grey(path, pixels):
    Image.fromarray(pixels).convert("L").save(path, format="JPEG", quality=90)


def bad_image_kinds():
    """(kind, file name, writer, expected PIL mode or None, expected outcome)."""
    return [
        ("truncated JPEG", "bad_truncated.jpg", write_truncated_jpeg, None, "skipped"),
        ("zero-byte file", "bad_empty.jpg", write_zero_bytes, None, "skipped"),
        ("non-image file", "bad_readme.png", write_text, None, "skipped"),
        ("PNG named .jpg", "png_named.jpg", write_png_named_jpg, "RGB", "kept"),
        ("16-bit PNG", "grey16.png", write_png16, "I;16", "kept"),
        ("CMYK JPEG", "cmyk.jpg", write_cmyk_jpeg, "CMYK", "kept"),
        ("RGBA PNG", "rgba.png", write_rgba, "RGBA", "kept"),
        ("palette PNG", "palette.png", write_palette, "P", "kept"),
        ("grey JPEG", "grey.jpg", write_grey, "L", "kept"),
    ]


def fixture_problem(path, expected_mode):
    """Checks the fixture itself: a 'kept' file decodes to the intended mode, a 'skipped' one fails."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
    except (OSError, SyntaxError, ValueError):
        return None if expected_mode is None else "fixture does not decode"
    if expected_mode is None:
        return f"fixture decodes (mode {mode})"
    if mode != expected_mode and not (expected_mode == "I;16" and mode.startswith("I")):
        return f"fixture mode {mode}, wanted {expected_mode}"
    return None


# ------------------------------------------------------------------------------------------------
# Readers (run in separate processes; spawn-safe top-level functions).


def read_outcome(cache, path):
    """One `read_cache` call: ('complete', digest), or (kind, message) where kind is 'not finished',
    'does not exist' (the two clear errors of a cache being written), 'CacheError' (any other
    refusal) or 'exception' (anything that is not a CacheError)."""
    try:
        return "complete", cache_digest(cache.read_cache(path))
    except cache.CacheError as error:
        message = str(error)
        if "is not finished" in message and "resume" in message:
            return "not finished", message
        if "does not exist" in message:
            return "does not exist", message
        return "CacheError", message
    except Exception as error:  # pylint: disable=broad-except
        return "exception", f"{type(error).__name__}: {error}"


def reader_loop(paths, stop, queue, pause):
    """Reads `paths` over and over until `stop` is set (then once more); reports what it saw."""
    cache = cache_module()
    counts, digests, errors = collections.Counter(), {p: collections.Counter() for p in paths}, []
    while True:
        final = stop.is_set()
        for path in paths:
            kind, value = read_outcome(cache, path)
            counts[kind] += 1
            if kind == "complete":
                digests[path][value] += 1
            elif kind not in ("not finished", "does not exist") and len(errors) < 5:
                errors.append(value)
        if final:
            break
        time.sleep(pause)
    queue.put({"counts": dict(counts), "digests": {p: dict(d) for p, d in digests.items()},
               "errors": errors})


def concurrent_reader(path, times, barrier, queue):
    cache = cache_module()
    barrier.wait(timeout=120)
    queue.put([read_outcome(cache, path) for _ in range(times)])


@contextlib.contextmanager
def background_reader(paths, pause=0.02):
    """Runs `reader_loop` in a spawned process; yields a dict filled with its report on exit."""
    context = multiprocessing.get_context("spawn")
    stop, queue = context.Event(), context.Queue()
    process = context.Process(target=reader_loop, args=(list(paths), stop, queue, pause), daemon=True)
    process.start()
    report = {}
    try:
        yield report
    finally:
        stop.set()
        try:
            report.update(queue.get(timeout=120))
        except Exception as error:  # pylint: disable=broad-except
            report.update({"counts": {"exception": 1}, "digests": {},
                           "errors": [f"reader died: {error!r}"]})
        process.join(30)
        if process.is_alive():
            process.kill()


def judge_reader(report, allowed_digests, allowed_errors):
    """Returns (ok, summary) of a `reader_loop` report."""
    counts = report.get("counts", {})
    unknown = sum(n for path, seen in report.get("digests", {}).items()
                  for d, n in seen.items() if d not in allowed_digests.get(path, ()))
    bad_errors = sum(n for kind, n in counts.items() if kind not in ("complete", *allowed_errors))
    seen = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
    ok = bool(counts) and unknown == 0 and bad_errors == 0
    summary = f"{sum(counts.values())} reads: {seen}; unexpected contents {unknown}"
    if report.get("errors"):
        summary += f"; e.g. {shorten(report['errors'][0], 150)}"
    return ok, summary


# ------------------------------------------------------------------------------------------------
# Watching and killing an extraction.


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
    if not os.path.isdir(output_dir):
        return []
    return sorted(n for n in os.listdir(output_dir) if n.endswith(".parts"))


def kill_state(output_dir, targets, total_parts):
    """Describes what an extraction had on disk: (category, description, finished parts)."""
    entries = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    description, categories, finished = [], [], 0
    for split in SPLITS:
        name = os.path.basename(targets[split])
        done = os.path.exists(targets[split])
        folders = [e for e in entries if e.startswith(f".{name}.") and e.endswith(".parts")]
        merging = any(e.startswith(f".{name}.") and e.endswith(".tmp") for e in entries)
        if done and folders:
            description.append(f"{split} merged, parts not yet removed")
            categories.append("after a merge, before cleanup")
        elif done:
            description.append(f"{split} done")
        elif merging:
            description.append(f"{split} merging")
            categories.append("during a merge")
        elif folders:
            files = os.listdir(os.path.join(output_dir, folders[0]))
            parts = sum(f.startswith("part-") and f.endswith(".h5") for f in files)
            writing = any(f.endswith(".tmp") for f in files)
            finished += parts
            description.append(f"{split} {parts}/{total_parts[split]} parts"
                               + (", next being written" if writing else ""))
            if writing:
                categories.append("during the first part" if parts == 0 else "during a part")
            else:
                categories.append("before the first part" if parts == 0 else "between parts")
    if not categories:
        done = [s for s in SPLITS if os.path.exists(targets[s])]
        categories.append("after both caches" if len(done) == 2 else "between splits")
    return categories[0], "; ".join(description) or "nothing yet", finished


def progress_units(output_dir, targets, parts):
    """Finished work: one unit per finished part, one per finished merge (a split's cache)."""
    units = 0
    entries = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    for split in SPLITS:
        if os.path.exists(targets[split]):
            units += parts[split] + 1
            continue
        name = os.path.basename(targets[split])
        for entry in entries:
            if entry.startswith(f".{name}.") and entry.endswith(".parts"):
                with contextlib.suppress(OSError):
                    units += sum(f.startswith("part-") and f.endswith(".h5")
                                 for f in os.listdir(os.path.join(output_dir, entry)))
    return units


def progress_moment(output_dir, targets, parts, goal, unit_seconds, timeout):
    """A `when` for `signal_run`: `goal` units of progress (e.g. 6.4 = 6 units, then 0.4 of one).

    The fraction is timed with the run's own pace so far (or `unit_seconds` before the first unit),
    so kills spread the same way on a busy machine.
    """
    whole, rest = int(goal), goal - int(goal)

    def wait(process, ready):
        wait_until(lambda: progress_units(output_dir, targets, parts) >= whole, process, timeout)
        reached = time.monotonic()
        unit = (reached - ready) / whole if whole else unit_seconds
        wait_until(lambda: time.monotonic() - reached >= rest * unit, process, timeout, 0.001)

    return wait


def signal_run(setup, command, output_dir, sig, when, log_name):
    """Starts `command`, waits for the parts folder, then for `when(process, ready)`, sends `sig`.

    Returns:
        `(returncode, stderr, seconds after ready at the signal, exited_before_signal)`.
    """
    logs = setup.path("logs")
    os.makedirs(logs, exist_ok=True)
    err_path = os.path.join(logs, f"{log_name}.stderr")
    with open(os.path.join(logs, f"{log_name}.stdout"), "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(command, cwd=setup.workdir, stdout=out, stderr=err)
        try:
            if not wait_until(lambda: parts_folders(output_dir), process, setup.timeout):
                raise RuntimeError(f"{log_name}: no parts folder appeared (exit {process.poll()})")
            ready = time.monotonic()
            when(process, ready)
            at = time.monotonic() - ready
            exited = process.poll() is not None
            if not exited:
                process.send_signal(sig)
            code = process.wait(setup.timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    with open(err_path, encoding="utf-8", errors="replace") as f:
        return code, f.read(), at, exited


# ------------------------------------------------------------------------------------------------
# 1. Reference.


def run_reference(setup):
    """The uninterrupted run, timed, with a reader polling its targets. Returns (Reference, checks)."""
    cache = cache_module()
    output = setup.path("reference")
    targets = target_paths(output, os.path.basename(setup.dataset))
    logs = setup.path("logs")
    os.makedirs(logs, exist_ok=True)
    out_path, err_path = os.path.join(logs, "reference.stdout"), os.path.join(logs, "reference.stderr")
    with background_reader(targets.values()) as report, open(out_path, "w") as out, \
            open(err_path, "w") as err:
        start = time.monotonic()
        process = subprocess.Popen(setup.extract_command(output), cwd=setup.workdir, stdout=out,
                                   stderr=err)
        wait_until(lambda: parts_folders(output), process, setup.timeout)
        ready = time.monotonic() - start
        wait_until(lambda: all(os.path.exists(p) for p in targets.values()), process, setup.timeout)
        done = time.monotonic() - start
        process.wait(setup.timeout)
        exit_s = time.monotonic() - start
    with open(out_path) as out, open(err_path, errors="replace") as err:
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"The reference extraction failed (exit {process.returncode}):\n{stderr}")
    caches = {s: cache.read_cache(p) for s, p in targets.items()}
    digests = {s: cache_digest(c) for s, c in caches.items()}
    parts = {s: math.ceil(len(c.filenames) / setup.checkpoint_every) for s, c in caches.items()}
    reference = Reference(targets, caches, digests, parts, ready, done, exit_s)
    reader_ok, reader_summary = judge_reader(
        report, {targets[s]: {digests[s]} for s in SPLITS}, ("not finished", "does not exist"))
    checks = [Check("reader", "reader during a fresh extraction", reader_ok, reader_summary)]
    rows = [(s, len(caches[s].filenames), len(caches[s].skipped), parts[s], caches[s].feature_shape,
             digests[s][:12]) for s in SPLITS]
    print_table("1. reference run", ("split", "rows", "skipped", "parts", "feature shape", "digest"),
                rows, [f"command: {' '.join(setup.extract_command(output))}",
                       f"parts folder after {ready:.1f}s, both caches after {done:.1f}s, "
                       f"exit after {exit_s:.1f}s; stdout: {' | '.join(stdout.splitlines())}",
                       f"reader polling the targets meanwhile: {verdict(reader_ok)} ({reader_summary})"])
    return reference, checks


# ------------------------------------------------------------------------------------------------
# 2. Kills.


def compare_caches(got, ref):
    """Returns (identical, lost rows, duplicated rows, changed rows)."""
    have, want = collections.Counter(got.filenames), collections.Counter(ref.filenames)
    lost = sum((want - have).values())
    duplicated = sum((have - want).values())
    ref_rows = {name: i for i, name in enumerate(ref.filenames)}
    changed = sum(1 for i, name in enumerate(got.filenames) if name in ref_rows
                  and not np.array_equal(got.features[i], ref.features[ref_rows[name]]))
    identical = (np.array_equal(got.features, ref.features) and np.array_equal(got.labels, ref.labels)
                 and got.filenames == ref.filenames and got.class_names == ref.class_names
                 and got.skipped == ref.skipped and got.fingerprint == ref.fingerprint)
    return identical, lost, duplicated, changed


def run_to_completion(setup, command, attempts=3):
    """Runs `command`; runs it again if a SIGTERM this script did not send stopped it.

    (Another user's `pkill extract_features` on a shared machine is one more interruption the
    library must survive; it is reported, and the run is simply started again.)

    Returns:
        `(Completed, number of external SIGTERMs)`.
    """
    for attempt in range(attempts):
        completed = run_command(command, setup.workdir, setup.timeout)
        if completed.returncode not in (128 + signal.SIGTERM, -signal.SIGTERM):
            return completed, attempt
    return completed, attempts


def resume_and_compare(setup, ref, output, command):
    """Runs `command` to completion; returns (ok, problems, lost, duplicated, seconds, stdout)."""
    cache = cache_module()
    completed, external = run_to_completion(setup, command)
    problems, lost, duplicated = [], 0, 0
    if external:
        print(f"   note: the run again in {output} got {external} SIGTERM(s) from outside this script "
              "(another user's pkill?); it was started again", flush=True)
    if completed.returncode != 0:
        problems.append(f"resume exit {completed.returncode}: "
                        f"{shorten((visible_lines(completed.stderr) or [''])[-1])}")
    for split in SPLITS:
        path = target_paths(output, os.path.basename(setup.dataset))[split]
        try:
            got = cache.read_cache(path)
        except cache.CacheError as error:
            problems.append(f"{split}: {shorten(error)}")
            lost += len(ref.caches[split].filenames)
            continue
        identical, split_lost, split_dup, changed = compare_caches(got, ref.caches[split])
        lost, duplicated = lost + split_lost, duplicated + split_dup
        if not identical:
            problems.append(f"{split} differs from the reference ({changed} rows with other features)")
    expected = sorted(os.path.basename(p) for p in ref.paths.values())
    leftovers = [e for e in all_entries(output) if e not in expected]
    if leftovers:
        problems.append(f"left behind: {', '.join(leftovers[:3])}{' ...' if len(leftovers) > 3 else ''}"
                        f" ({len(leftovers)} entries, {folder_bytes(output) // 1024} KiB in the folder)")
    return not problems, problems, lost, duplicated, completed.seconds, completed.stdout


def reads_after_kill(ref, targets):
    """read_cache on each target of a killed run: the reference file or a clear error."""
    cache = cache_module()
    outcomes, ok = [], True
    for split in SPLITS:
        kind, value = read_outcome(cache, targets[split])
        if kind == "complete":
            if value != ref.digests[split]:
                kind, ok = "OTHER CONTENT", False
        elif kind not in ("not finished", "does not exist"):
            kind, ok = f"{kind}: {shorten(value, 60)}", False
        outcomes.append(kind)
    return ok, "/".join(outcomes)


def kill_trial(setup, ref, label, index, sig, goal):
    """One fault: signal an extraction at `goal` units of progress (None: when the training cache
    appears), check what it left, run the same command again, compare with the reference."""
    output = setup.path("kills", f"{label}-{index:02d}")
    command = setup.extract_command(output)
    targets = target_paths(output, os.path.basename(setup.dataset))
    if goal is None:
        def when(process, ready):
            del ready
            wait_until(lambda: os.path.exists(targets["train"]), process, setup.timeout, 0.0003)
    else:
        units = sum(ref.parts.values()) + len(SPLITS)
        when = progress_moment(output, targets, ref.parts, goal,
                               (ref.done_s - ref.ready_s) / units, setup.timeout)
    code, stderr, at, exited = signal_run(setup, command, output, sig, when, f"{label}-{index:02d}")
    category, description, finished = kill_state(output, targets, ref.parts)
    if exited:
        category = "exited before the signal"
    problems = []
    reads_ok, reads = reads_after_kill(ref, targets)
    if not reads_ok:
        problems.append(f"read after the kill: {reads}")
    if sig == signal.SIGTERM and not exited:
        tmp = temporary_files(output)
        if code not in (143, 0):
            problems.append(f"SIGTERM exit {code} (expected 143)")
        if "Traceback (most recent call last)" in stderr:
            problems.append("traceback on SIGTERM")
        if tmp:
            problems.append(f"temporary files after SIGTERM: {', '.join(tmp)}")
    elif sig == signal.SIGKILL and not exited and code != -signal.SIGKILL:
        problems.append(f"exit {code} after SIGKILL")
    ok, more, lost, duplicated, seconds, _ = resume_and_compare(setup, ref, output, command)
    problems += more
    aim = "train cache" if goal is None else f"{goal:4.1f}"
    row = (f"{label} {index}", signal.Signals(sig).name, aim, f"{at:5.2f}s", category, description,
           code, reads, finished, f"{seconds:4.1f}s", lost, duplicated, verdict(not problems))
    check = Check("fault", f"{signal.Signals(sig).name} #{index} ({category})", not problems,
                  "; ".join(problems), lost, duplicated)
    return row, check


def kill_schedule(ref, kills, sigterms, rng):
    """(label, index, signal, goal) for every trial.

    Goals are in units of progress (finished parts and merges of both splits), stratified over the
    whole run for the kills (the first one always within the first part); None aims at the moment
    the training cache appears.
    """
    units = sum(ref.parts.values()) + len(SPLITS)
    schedule = [("kill", i, signal.SIGKILL, units * (i + rng.random()) / kills) for i in range(kills)]
    schedule[0] = ("kill", 0, signal.SIGKILL, rng.random())  # always one within the first part
    schedule += [("term", i, signal.SIGTERM, units * rng.uniform(0.1, 0.9)) for i in range(sigterms)]
    # Aimed: between the training merge's rename and the removal of its parts.
    schedule.append(("aimed", 0, signal.SIGKILL, None))
    return schedule


def kill_checks(setup, ref, kills, sigterms, jobs, rng):
    schedule = kill_schedule(ref, kills, sigterms, rng)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda trial: kill_trial(setup, ref, *trial), schedule))
    rows, checks = [r for r, _ in results], [c for _, c in results]
    notes = [f"{c.name}: {c.detail}" for c in checks if c.detail]
    categories = collections.Counter(r[4] for r in rows)
    notes.append("kill moments: " + ", ".join(f"{k} {n}" for k, n in categories.most_common()))
    notes.append(f"aim: units of progress out of {sum(ref.parts.values()) + len(SPLITS)} (each finished "
                 f"part or merge is one); t: seconds after the parts folder appeared; {jobs} trial(s) "
                 "at a time")
    print_table("2. kills (signal at the aimed moment, then the same command again)",
                ("trial", "signal", "aim", "t", "moment", "on disk at the signal", "exit",
                 "reads (train/val)", "parts kept", "resume", "lost", "dup", "result"), rows, notes)
    return checks


# ------------------------------------------------------------------------------------------------
# 3. Disk full.


@contextlib.contextmanager
def small_filesystem(path, size_bytes):
    """Mounts a tmpfs of `size_bytes` at `path` when possible; yields 'tmpfs' or None."""
    os.makedirs(path, exist_ok=True)
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        kib = max(64, int(size_bytes // 1024))
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0755", "tmpfs", path],
                                capture_output=True, text=True)
        mounted = result.returncode == 0
    try:
        yield "tmpfs" if mounted else None
    finally:
        if mounted:
            if subprocess.run(["umount", path], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", path], capture_output=True)


def grow_filesystem(path, size_bytes):
    kib = int(size_bytes // 1024)
    return subprocess.run(["mount", "-o", f"remount,size={kib}k", path], capture_output=True).returncode == 0


def limit_file_size(limit):
    def preexec():
        import resource  # pylint: disable=g-import-not-at-top
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def place_previous_caches(ref, folder):
    for path in ref.paths.values():
        shutil.copy2(path, os.path.join(folder, os.path.basename(path)))


def previous_intact(ref, folder):
    cache = cache_module()
    for split, path in ref.paths.items():
        kind, value = read_outcome(cache, os.path.join(folder, os.path.basename(path)))
        if kind != "complete" or value != ref.digests[split]:
            return False, f"previous {split} cache: {kind} {shorten(value, 80) if kind != 'complete' else ''}"
    return True, "previous caches read back identical"


def disk_full_run(setup, ref, folder, mode, preexec=None):
    command = setup.extract_command(folder, "--pooling=max", "--overwrite")
    start = time.monotonic()
    result = subprocess.run(command, cwd=setup.workdir, capture_output=True, text=True,
                            timeout=setup.timeout, preexec_fn=preexec)
    completed = Completed(command, result.returncode, result.stdout, result.stderr,
                          time.monotonic() - start)
    error_ok, message = clean_error(completed, "extract_features")
    intact_ok, intact = previous_intact(ref, folder)
    tmp = temporary_files(folder)
    parts = [e for e in all_entries(folder) if e.endswith(".h5") and ".parts" in e]
    problems = [] if error_ok else [message]
    if not intact_ok:
        problems.append(intact)
    if tmp:
        problems.append(f"temporary files left: {', '.join(tmp)}")
    detail = {"message": message, "tmp": tmp, "parts": parts, "completed": completed,
              "intact": intact, "mode": mode}
    return problems, detail


def disk_full_checks(setup, ref, max_caches):
    """A previous valid pair, then an --overwrite extraction that cannot fit."""
    cache_size = max(os.path.getsize(p) for p in ref.paths.values())  # a part holds one chunk too
    previous = sum(os.path.getsize(p) for p in ref.paths.values())
    scenarios = [("parts", previous + 2.5 * cache_size),
                 ("merge", previous + (ref.parts["train"] + 0.5) * cache_size)]
    rows, checks, notes = [], [], []
    for name, size in scenarios:
        folder = setup.path("diskfull", name)
        with small_filesystem(folder, size) as mounted:
            if not mounted and name == "merge":
                checks.append(Check("fault", "disk full during the merge", None,
                                    "not testable without a tmpfs (RLIMIT_FSIZE is per file)"))
                rows.append((name, "n/a", "", "", "", "", "n/a"))
                continue
            place_previous_caches(ref, folder)
            preexec = None if mounted else limit_file_size(int(cache_size // 2))
            problems, detail = disk_full_run(setup, ref, folder, mounted or "RLIMIT_FSIZE", preexec)
            completed = detail["completed"]
            shown = visible_lines(completed.stderr)
            user_sees = [l for l in shown if not l.startswith(("vgg16 ", "WARNING: All log", "I0000",
                                                               "E0000", "W0000"))]
            notes.append(f"[{name}] stderr, {len(shown)} lines; without TensorFlow's start-up lines "
                         f"and progress bars the user sees:")
            shown_lines = user_sees if len(user_sees) <= 8 else (
                user_sees[:3] + [f"... {len(user_sees) - 6} more lines ..."] + user_sees[-3:])
            notes += [f"    {shorten(l, 240)}" for l in shown_lines] or ["    <nothing>"]
            notes.append(f"[{name}] {detail['intact']}; parts kept for a resume: {len(detail['parts'])}, "
                         f"{folder_bytes(folder) // 1024} KiB in the folder")
            if name == "merge" and mounted:
                problems += resume_after_room(setup, folder, previous + 64 * cache_size, max_caches,
                                              notes)
            if problems:
                notes.append(f"[{name}] problems: {'; '.join(problems)}")
            checks.append(Check("fault", f"disk full during the {name}", not problems,
                                "; ".join(problems)))
            rows.append((name, f"{detail['mode']} {int(size // 1024)} KiB", describe_exit(completed.returncode),
                         f"{completed.seconds:.1f}s", len(detail["parts"]), len(detail["tmp"]),
                         verdict(not problems)))
    print_table("4. disk full (previous valid caches, then --pooling=max --overwrite that cannot fit)",
                ("fills during", "filesystem", "exit", "time", "parts kept", "tmp left", "result"),
                rows, notes)
    return checks


def resume_after_room(setup, folder, size, max_caches, notes):
    """Makes room and runs the same command again: it must finish, equal to an unhindered run."""
    if not grow_filesystem(folder, size):
        notes.append("[merge] could not grow the tmpfs; resume not tested")
        return []
    completed = run_command(setup.extract_command(folder, "--pooling=max", "--overwrite"),
                            setup.workdir, setup.timeout)
    if completed.returncode != 0:
        return [f"after making room, the same command exits {completed.returncode}: "
                f"{shorten((visible_lines(completed.stderr) or [''])[-1])}"]
    if not max_caches:
        notes.append("[merge] after making room the run finished; no --pooling=max reference to compare")
        return []
    cache = cache_module()
    problems = []
    for split, path in max_caches.items():
        got = read_outcome(cache, os.path.join(folder, os.path.basename(path)))
        want = read_outcome(cache, path)
        if got != want:
            problems.append(f"after making room, the {split} cache differs from an unhindered run")
    leftovers = [e for e in all_entries(folder) if not e.endswith("features_train.h5")
                 and not e.endswith("features_validation.h5")]
    if leftovers:
        problems.append(f"after making room, left behind: {', '.join(leftovers[:3])}")
    notes.append(f"[merge] after making room, the same command finished in {completed.seconds:.1f}s"
                 f" ({'identical to' if not problems else 'NOT identical to'} an unhindered run)")
    return problems


# ------------------------------------------------------------------------------------------------
# 4. Corrupt caches.


def truncate_half(path):
    os.truncate(path, os.path.getsize(path) // 2)
    return f"truncated to {os.path.getsize(path)} bytes"


def flip_middle_bytes(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2 - 32)
        data = bytearray(f.read(64))
        f.seek(size // 2 - 32)
        f.write(bytes(b ^ 0xFF for b in data))
    return f"64 bytes at offset {size // 2 - 32} inverted"


def flip_feature_bit(path):
    import h5py  # pylint: disable=g-import-not-at-top
    with h5py.File(path, "r") as f:
        features = f["features"]
        offset = features.id.get_chunk_info(0).byte_offset
        used = features.shape[0] * int(np.prod(features.shape[1:])) * 4
    position = offset + (used // 2 // 4) * 4 + 2  # a float's third byte: its exponent's lowest bit
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ 0x80]))
    return f"1 bit at offset {position} (mid feature data) flipped"


def delete_attribute(path):
    import h5py  # pylint: disable=g-import-not-at-top
    with h5py.File(path, "r+") as f:
        del f.attrs["network"]
    return "attribute `network` deleted"


def corruptions():
    return [("truncated cache", truncate_half), ("bytes flipped mid-file", flip_middle_bytes),
            ("bit flipped in features", flip_feature_bit), ("attribute deleted", delete_attribute)]


def refused_by_training(setup, training_file, validation_file, name):
    """feature_extraction on a pair: must exit 1 with one message, write nothing and leave both
    files as they were (a changed one is reported as destroyed in the message)."""
    output = setup.path("runs", name)
    before = bad_inputs.snapshot(training_file, validation_file)
    completed = run_command([setup.tool("feature_extraction"), f"--training_file={training_file}",
                             f"--validation_file={validation_file}", f"--output_dir={output}",
                             "--epochs=1"], setup.workdir, setup.timeout)
    ok, message = clean_error(completed, "feature_extraction")
    if os.path.exists(output):
        ok, message = False, f"{message} (and {output} was written)"
    destroyed = bad_inputs.destroyed(before)
    if destroyed:
        ok, message = False, f"{message} (and destroyed {', '.join(destroyed)})"
    return ok, message


def corrupt_cache_checks(setup, ref):
    cache = cache_module()
    rows, checks, notes = [], [], []
    folder = setup.path("corrupt")
    os.makedirs(folder, exist_ok=True)
    for name, corrupt in corruptions():
        path = os.path.join(folder, name.replace(" ", "_") + "_train.h5")
        shutil.copy2(ref.paths["train"], path)
        how = corrupt(path)
        kind, value = read_outcome(cache, path)
        if kind == "complete":
            # feature_extraction reads through read_cache: it would train on this file. Not run.
            same = value == ref.digests["train"]
            ok = same  # flipped bytes that no reader ever gets (chunk padding) change nothing
            read = "accepted, same data" if same else "ACCEPTED, DIFFERENT DATA"
            cli = "not run (reads via read_cache)"
            message = ("harmless: the flipped bytes are unused chunk space; every value reads back "
                       "identical" if same else "silent corruption: read_cache returns altered "
                       "features without an error, and feature_extraction would train on them")
        else:
            cli_ok, cli_message = refused_by_training(setup, path, ref.paths["validation"],
                                                      name.replace(" ", "_"))
            ok = kind == "CacheError" and cli_ok
            read, cli = kind, "exit 1, one line" if cli_ok else "NO"
            message = f"read_cache -> {value} | feature_extraction -> {cli_message}"
        checks.append(Check("corrupt", name, ok, message))
        rows.append((name, how, read, cli, verdict(ok)))
        notes.append(f"{name}: {shorten(message, 330)}")
    print_table("5. corrupt caches (read_cache, then feature_extraction with the reference validation)",
                ("corruption", "how", "read_cache", "feature_extraction", "result"), rows, notes)
    return checks


# ------------------------------------------------------------------------------------------------
# 5. Readers.


def concurrent_readers(ref, processes=4, times=10):
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=concurrent_reader, args=(ref.paths["train"], times, barrier, queue))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = []
    for _ in workers:
        try:
            outcomes += queue.get(timeout=180)
        except Exception as error:  # pylint: disable=broad-except
            outcomes.append(("exception", f"worker lost: {error!r}"))
    for worker in workers:
        worker.join(30)
    good = sum(1 for kind, value in outcomes if kind == "complete" and value == ref.digests["train"])
    ok = good == processes * times
    bad = [v for k, v in outcomes if k != "complete"][:1]
    return Check("reader", f"{processes} concurrent readers", ok,
                 f"{good}/{processes * times} reads identical to the reference"
                 + (f"; e.g. {shorten(bad[0], 150)}" if bad else ""))


def reader_during_overwrite(setup, ref):
    """A reader polls old complete caches while an --overwrite extraction replaces them."""
    cache = cache_module()
    folder = setup.path("readers")
    os.makedirs(folder, exist_ok=True)
    place_previous_caches(ref, folder)
    paths = {s: os.path.join(folder, os.path.basename(p)) for s, p in ref.paths.items()}
    with background_reader(paths.values()) as report:
        time.sleep(1.0)  # let the reader start before the extraction
        completed = run_command(setup.extract_command(folder, "--pooling=max", "--overwrite"),
                                setup.workdir, setup.timeout)
    new = {s: read_outcome(cache, p) for s, p in paths.items()}
    allowed = {paths[s]: {ref.digests[s], new[s][1]} for s in SPLITS}
    ok, summary = judge_reader(report, allowed, ())
    final = all(kind == "complete" for kind, _ in new.values()) and completed.returncode == 0
    if not final:
        ok, summary = False, f"{summary}; the extraction itself: exit {completed.returncode}"
    saw_old = sum(report.get("digests", {}).get(paths[s], {}).get(ref.digests[s], 0) for s in SPLITS)
    saw_new = sum(report.get("digests", {}).get(paths[s], {}).get(new[s][1], 0) for s in SPLITS)
    summary += f" (old file {saw_old}x, new file {saw_new}x)"
    max_caches = paths if final else {}
    return Check("reader", "reader during an --overwrite extraction", ok, summary), max_caches


def reader_checks(setup, ref, reference_checks):
    checks = [concurrent_readers(ref)]
    check, max_caches = reader_during_overwrite(setup, ref)
    checks.append(check)
    every = reference_checks + checks
    print_table("3. readers", ("check", "result", "what the readers saw"),
                [(c.name, verdict(c.ok), c.detail) for c in every])
    return checks, max_caches


# ------------------------------------------------------------------------------------------------
# 6. Bad inputs.


def build_bad_dataset(root, rng):
    """3 classes x 4 good train images (+ 2 validation), plus one file of each bad kind."""
    make_dataset(root, rng, train=4, val=2)
    kinds = []
    for index, (kind, name, write, mode, expected) in enumerate(bad_image_kinds()):
        relative = f"train/class_{index % 3}/{name}"
        write(os.path.join(root, relative), synthetic_pixels(rng, index % 3))
        kinds.append((kind, relative, expected, fixture_problem(os.path.join(root, relative), mode)))
    return kinds


def image_kind_checks(setup, rng):
    cache = cache_module()
    root = setup.path("badinputs")
    kinds = build_bad_dataset(root, rng)
    output = setup.path("badinputs_out")
    before = bad_inputs.snapshot(root)
    completed = run_command(setup.extract_command(output, dataset=root), setup.workdir, setup.timeout)
    destroyed = bad_inputs.destroyed(before)
    path = target_paths(output, "badinputs")["train"]
    try:
        train = cache.read_cache(path)
        kept, skipped = set(train.filenames), dict(train.skipped)
    except cache.CacheError as error:
        kept, skipped = set(), {}
        print(f"   bad-image extraction produced no readable cache (exit {completed.returncode}): {error}")
    warnings = [l for l in visible_lines(completed.stderr) if "Skipped " in l]
    checks, rows = [], []
    for kind, relative, expected, fixture in kinds:
        outcome = ("kept" if relative in kept and relative not in skipped else
                   "skipped" if relative in skipped and relative not in kept else "missing")
        logged = any(relative in w for w in warnings)
        ok = completed.returncode == 0 and outcome == expected and (expected == "kept" or logged)
        if fixture:
            ok = False
        reason = skipped.get(relative, "")
        detail = f"fixture problem: {fixture}" if fixture else shorten(reason, 90)
        # A destroyed dataset file is counted once, on the first row.
        checks.append(Check("bad input", kind, ok and not destroyed, "" if ok else f"{outcome}; {detail}",
                            destroyed=len(destroyed) if not checks else 0))
        rows.append((kind, relative, expected, outcome + (", logged" if logged else ""), detail,
                     verdict(ok)))
    stdout = " | ".join(completed.stdout.splitlines())
    return checks, rows, [f"bad-image dataset run: exit {completed.returncode}; stdout: {stdout}"]


def refused_extraction(setup, dataset, output, prefix=(), env=None):
    """An extraction that must fail: exit 1, one message, nothing at all in `output`, no dataset file
    touched. Returns (ok, message, user files destroyed)."""
    before = bad_inputs.snapshot(dataset)
    completed = run_command(setup.extract_command(output, dataset=dataset), setup.workdir,
                            setup.timeout, env=env, prefix=prefix)
    ok, message = clean_error(completed, "extract_features")
    written = all_entries(output) if os.path.isdir(output) else []
    if written:
        ok, message = False, f"{message} (and wrote {', '.join(written[:3])})"
    destroyed = bad_inputs.destroyed(before)
    if destroyed:
        ok, message = False, f"{message} (and destroyed {', '.join(destroyed[:3])})"
    return ok, message, len(destroyed)


def empty_class_check(setup, rng):
    root = make_dataset(setup.path("emptyclass"), rng, train=3, val=1, empty_classes=("class_empty",))
    ok, message, destroyed = refused_extraction(setup, root, setup.path("emptyclass_out"))
    return Check("bad input", "empty class folder", ok, message, destroyed=destroyed)


def unprivileged_prefix(root, readable, unreadable):
    """The command prefix that runs a child as uid 65534, or (None, why) when it cannot be done."""
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


def unreadable_class_check(setup, rng):
    root = make_dataset(setup.path("unreadable"), rng, train=3, val=1)
    locked = os.path.join(root, "train", "class_2")
    output_parent = setup.path("unreadable_out")
    os.makedirs(output_parent)
    os.chmod(locked, 0)
    try:
        prefix, why = unprivileged_prefix(root, os.path.join(root, "train", "class_1"), locked)
        if prefix is None:
            return Check("bad input", "unreadable class folder", None, why)
        env = dict(os.environ)
        if prefix:
            home = setup.path("nobody_home")
            os.makedirs(home)
            for folder in (home, output_parent):
                os.chown(folder, NOBODY, NOBODY)
            env["HOME"] = home
        ok, message, destroyed = refused_extraction(setup, root, os.path.join(output_parent, "caches"),
                                                    prefix=prefix, env=env)
        mentions = any(w in message.lower() for w in ("permission", "denied", "unreadable", "cannot read",
                                                      "not readable"))
        if ok and not mentions:
            ok, message = False, f"misleading: says nothing of permissions: {message}"
        user = f"uid {NOBODY} via setpriv" if prefix else f"uid {os.geteuid()}"
        return Check("bad input", "unreadable class folder", ok, f"[{user}] {message}", destroyed=destroyed)
    finally:
        os.chmod(locked, 0o755)


def bad_input_checks(setup, ref, corrupt, max_caches, rng):
    checks, rows, notes = image_kind_checks(setup, rng)
    extra = [empty_class_check(setup, rng), unreadable_class_check(setup, rng)]
    by_name = {c.name: c for c in corrupt}
    extra.append(dataclasses.replace(by_name["bit flipped in features"], group="bad input",
                                     name="corrupted cache (bit flip)"))
    extra.append(dataclasses.replace(by_name["truncated cache"], group="bad input"))
    other = max_caches.get("validation") if max_caches else None
    validation = other or target_paths(setup.path("badinputs_out"), "badinputs")["validation"]
    ok, message = refused_by_training(setup, ref.paths["train"], validation, "mismatched_pair")
    extra.append(Check("bad input", "mismatched train/validation pair", ok, message))
    for check in extra:
        rows.append((check.name, "", "one clear error", "", shorten(check.detail, 90), verdict(check.ok)))
        notes.append(f"{check.name}: {shorten(check.detail, 400)}")
    checks += extra
    print_table("6. bad inputs", ("input", "file", "expected", "outcome", "reason / message", "result"),
                rows, notes)
    return checks


# ------------------------------------------------------------------------------------------------
# Main.


def summarize(checks, seconds):
    def count(group):
        tested = [c for c in checks if c.group == group and c.ok is not None]
        return f"{sum(c.ok for c in tested)}/{len(tested)}"

    faults = [c for c in checks if c.group == "fault"]
    untested = [c for c in checks if c.ok is None]
    failed = [c for c in checks if c.ok is False]
    print(f"\n== {len(failed)} failed check(s)" + (":" if failed else ""))
    for check in failed:
        print(f"   [{check.group}] {check.name}: {shorten(check.detail, 400)}")
    for check in untested:
        print(f"   not tested: [{check.group}] {check.name}: {check.detail}")
    print(f"runtime: {seconds:.0f}s")
    print(f"faults survived: {count('fault')}, bad inputs handled: {count('bad input')}, "
          f"output folders refused: {count('output folder')}, "
          f"rows lost: {sum(c.lost for c in faults)}, rows duplicated: {sum(c.duplicated for c in faults)}, "
          f"corrupt caches refused: {count('corrupt')}, reader checks: {count('reader')}, "
          f"not testable: {len(untested)}, user files destroyed: {sum(c.destroyed for c in checks)}")
    return 1 if failed else 0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--workdir", help="make the work folder inside DIR (default: a new temp folder)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILL trials (default 10)")
    parser.add_argument("--sigterms", type=int, default=2, help="SIGTERM trials (default 2)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="kill trials run at once (default 2; 1 runs one extraction at a time)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the kill moments")
    parser.add_argument("--timeout", type=float, default=180, help="seconds allowed per command")
    parser.add_argument("--bin_dir", default=os.path.dirname(os.path.abspath(sys.executable)),
                        help="folder of the extract_features and feature_extraction scripts")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--parts", default="1-7",
                        help="1-7 (default) runs every part; 7 runs part 7 (issue 10) alone")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.sigterms < 0 or args.jobs < 1:
        parser.error("expected --kills >= 1, --sigterms >= 0 and --jobs >= 1")
    if args.parts not in ("1-7", "7"):
        parser.error(f"expected --parts=1-7 or --parts=7, got {args.parts!r}")
    return args


def make_workdir(parent):
    if parent:
        os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="fault_injection-", dir=parent)
    os.chmod(workdir, 0o755)  # the unreadable-folder check runs a child as an unprivileged user
    return workdir


def run_all(setup, args):
    if args.parts == "7":
        return user_files.checks(setup, sys.modules[__name__])
    rng = random.Random(args.seed)
    data_rng = np.random.default_rng(args.seed)
    make_dataset(setup.dataset, data_rng)
    reference, reference_checks = run_reference(setup)
    checks = list(reference_checks)
    checks += kill_checks(setup, reference, args.kills, args.sigterms, args.jobs, rng)
    readers, max_caches = reader_checks(setup, reference, reference_checks)
    checks += readers
    checks += disk_full_checks(setup, reference, max_caches)
    corrupt = corrupt_cache_checks(setup, reference)
    checks += corrupt
    checks += bad_input_checks(setup, reference, corrupt, max_caches, data_rng)
    checks += user_files.checks(setup, sys.modules[__name__])
    return checks


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    workdir = make_workdir(args.workdir)
    setup = Setup(workdir=workdir, bin_dir=args.bin_dir, timeout=args.timeout,
                  dataset=os.path.join(workdir, "synthetic"))
    for tool in ("extract_features", "feature_extraction", "export_model", "predict"):
        if not os.access(setup.tool(tool), os.X_OK):
            print(f"fault_injection: error: {setup.tool(tool)} not found; pass --bin_dir", file=sys.stderr)
            return 2
    print(f"work folder: {workdir}; seed {args.seed}; {args.kills} SIGKILLs + 1 aimed, "
          f"{args.sigterms} SIGTERMs, {args.jobs} at a time", flush=True)
    try:
        checks = run_all(setup, args)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return summarize(checks, time.monotonic() - start)


if __name__ == "__main__":
    sys.exit(main())
