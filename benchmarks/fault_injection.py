"""Fault injection for bottleneck-cache: kills, a full disk, corrupt caches, readers and bad inputs.

Builds a tiny synthetic class-folder dataset (3 classes x 40 train + 10 validation images, 32x32 JPEG
and PNG) in a temporary folder and drives the `extract_features` and `feature_extraction` console
scripts as subprocesses, the way a user or a scheduler would. Each part lives in its own module
under `benchmarks/faults/` (its docstring says what it checks and what counts as a pass); this
script runs them in order and prints the summary:

1. `reference.py`: one uninterrupted extraction (VGG16, random seeded weights, 32x32 input,
   batch 4, a checkpoint every 8 samples), with a reader process polling the target caches.
2. `kills.py`: `--kills` SIGKILLs at seeded random moments, one aimed between a merge and its
   clean-up, `--sigterms` SIGTERMs; each followed by the same command run to completion and
   compared with the reference (rows lost, duplicated). `--jobs` trials run at once.
3. `readers.py`: 4 processes reading one cache at once; a reader polling the caches while an
   `--overwrite` extraction replaces them.
4. `disk_full.py`: an `--overwrite` extraction that cannot fit on a small tmpfs (as root; else
   RLIMIT_FSIZE), during the parts and during the merge; the previous caches stay intact.
5. `corrupt_caches.py`: truncated, bytes flipped, one bit flipped in the features, an attribute
   deleted: `read_cache` raises `CacheError`, `feature_extraction` exits 1 with one message.
6. `bad_images.py`: one dataset holding every odd image of `tests/bad_inputs.py` (decodable ones
   kept, the others listed in `Cache.skipped`); an empty and an unreadable class folder (as root,
   run as uid 65534 with `setpriv`); a corrupted, a truncated and a mismatched pair of caches.
7. `user_files.py`: the bad datasets of `tests/bad_inputs.py` (issue 10) and the output folders
   that feature_extraction, export_model, predict and extract_features must refuse untouched.

`common.py` holds what they share (`Setup`, `Check`, running a command, tables, the synthetic data).

Before each run of parts 6 and 7, every user file it could touch (its inputs, and what was at its
output location) is snapshotted (size, mtime, SHA-256); a file changed or removed afterwards is
counted as destroyed.

Prints one table per part and ends with a summary line such as

    faults survived: 15/15, bad inputs handled: 34/34, output folders refused: 9/9, rows lost: 0,
    rows duplicated: 0, ..., user files destroyed: 0

and exits 1 if any check failed. About 2 to 5 minutes on 2 CPUs (--jobs 2). `--parts` runs some
parts alone, by number or name: `--parts=7` or `--parts=user_files` (about 1 minute),
`--parts=kills,readers` (parts 2 to 6 always run after part 1, the reference). Nothing outside the
work folder is touched; it is removed at the end unless --keep. As root, a tmpfs is mounted inside
it (and unmounted) for the disk-full part, and the unreadable-folder check runs its child as uid
65534 with setpriv.

Run from the repository root:

    .venv/bin/python benchmarks/fault_injection.py [--workdir DIR] [--kills 10] [--sigterms 2]
        [--jobs 2] [--seed 0] [--parts 1-7|N,...|NAME,...] [--keep]
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.faults import bad_images
from benchmarks.faults import common
from benchmarks.faults import corrupt_caches
from benchmarks.faults import disk_full
from benchmarks.faults import kills
from benchmarks.faults import readers
from benchmarks.faults import reference
from benchmarks.faults import user_files
# pylint: enable=g-import-not-at-top,wrong-import-position

# The parts, in the order they run; `--parts` takes their numbers (1-based) or names.
PARTS = ("reference", "kills", "readers", "disk_full", "corrupt_caches", "bad_images", "user_files")


def run_parts(setup, args):
    """Runs the parts named in `args.parts`; parts 2 to 6 run after the reference (part 1)."""
    checks = []
    if args.parts - {"user_files"}:
        checks += reference_and_comparisons(setup, args)
    if "user_files" in args.parts:
        checks += user_files.checks(setup)
    return checks


def reference_and_comparisons(setup, args):
    """Part 1, then each chosen part of 2 to 6 (they compare with it). Returns their checks."""
    rng = random.Random(args.seed)
    data_rng = np.random.default_rng(args.seed)
    common.make_dataset(setup.dataset, data_rng)
    ref, reference_checks = reference.run_reference(setup)
    checks, max_caches, corrupt = list(reference_checks), {}, []
    if "kills" in args.parts:
        checks += kills.kill_checks(setup, ref, args.kills, args.sigterms, args.jobs, rng)
    if "readers" in args.parts:
        found, max_caches = readers.reader_checks(setup, ref, reference_checks)
        checks += found
    if "disk_full" in args.parts:
        checks += disk_full.disk_full_checks(setup, ref, max_caches)
    if "corrupt_caches" in args.parts:
        corrupt = corrupt_caches.corrupt_cache_checks(setup, ref)
        checks += corrupt
    if "bad_images" in args.parts:
        checks += bad_images.bad_input_checks(setup, ref, corrupt, max_caches, data_rng)
    return checks


def summarize(checks, seconds):
    """Prints the failed and untested checks and the summary line; returns the exit status."""
    def count(group):
        tested = [c for c in checks if c.group == group and c.ok is not None]
        return f"{sum(c.ok for c in tested)}/{len(tested)}"

    faults = [c for c in checks if c.group == "fault"]
    untested = [c for c in checks if c.ok is None]
    failed = [c for c in checks if c.ok is False]
    print(f"\n== {len(failed)} failed check(s)" + (":" if failed else ""))
    for check in failed:
        print(f"   [{check.group}] {check.name}: {common.shorten(check.detail, 400)}")
    for check in untested:
        print(f"   not tested: [{check.group}] {check.name}: {check.detail}")
    print(f"runtime: {seconds:.0f}s")
    print(f"faults survived: {count('fault')}, bad inputs handled: {count('bad input')}, "
          f"output folders refused: {count('output folder')}, "
          f"rows lost: {sum(c.lost for c in faults)}, rows duplicated: {sum(c.duplicated for c in faults)}, "
          f"corrupt caches refused: {count('corrupt')}, reader checks: {count('reader')}, "
          f"not testable: {len(untested)}, user files destroyed: {sum(c.destroyed for c in checks)}")
    return 1 if failed else 0


def parse_parts(text):
    """`--parts` as a set of names: "1-7" or "all", or part numbers and names joined by commas."""
    if text in ("1-7", "all"):
        return set(PARTS)
    chosen = set()
    for item in text.split(","):
        item = item.strip()
        if item.isdigit() and 1 <= int(item) <= len(PARTS):
            chosen.add(PARTS[int(item) - 1])
        elif item in PARTS:
            chosen.add(item)
        else:
            raise ValueError(item)
    return chosen


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
                        help="1-7 (default) runs every part; else part numbers or names joined by commas, "
                             f"e.g. 2 or kills,readers ({', '.join(f'{i} {n}' for i, n in enumerate(PARTS, 1))}); "
                             "parts 2 to 6 run after part 1")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.sigterms < 0 or args.jobs < 1:
        parser.error("expected --kills >= 1, --sigterms >= 0 and --jobs >= 1")
    try:
        args.parts = parse_parts(args.parts)
    except ValueError as error:
        parser.error(f"expected --parts=1-7, or part numbers 1 to {len(PARTS)} or names ({', '.join(PARTS)}) "
                     f"joined by commas, got {args.parts!r} ({str(error)!r} is neither)")
    return args


def make_workdir(parent):
    if parent:
        os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="fault_injection-", dir=parent)
    os.chmod(workdir, 0o755)  # the unreadable-folder check runs a child as an unprivileged user
    return workdir


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    workdir = make_workdir(args.workdir)
    setup = common.Setup(workdir=workdir, bin_dir=args.bin_dir, timeout=args.timeout,
                         dataset=os.path.join(workdir, "synthetic"))
    for tool in ("extract_features", "feature_extraction", "export_model", "predict"):
        if not os.access(setup.tool(tool), os.X_OK):
            print(f"fault_injection: error: {setup.tool(tool)} not found; pass --bin_dir", file=sys.stderr)
            return 2
    print(f"work folder: {workdir}; seed {args.seed}; {args.kills} SIGKILLs + 1 aimed, "
          f"{args.sigterms} SIGTERMs, {args.jobs} at a time; parts: "
          f"{', '.join(n for n in PARTS if n in args.parts)}", flush=True)
    try:
        checks = run_parts(setup, args)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return summarize(checks, time.monotonic() - start)


if __name__ == "__main__":
    sys.exit(main())
