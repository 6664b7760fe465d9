"""Part 1 of the fault suite: the reference run that every other run is compared with.

One uninterrupted extraction of the synthetic dataset (VGG16, random seeded weights, 32x32 input,
batch 4, a checkpoint every 8 samples), timed (when its parts folder appears, when both caches
exist, when it exits), with a reader process polling the target caches meanwhile: the reader may
see "does not exist", "not finished" or the final file, nothing else.
"""

import math
import os
import subprocess
import time

from benchmarks.faults import common
from benchmarks.faults import readers
from bottleneck_cache.pipeline import cache


def timed_extraction(setup, output, targets):
    """Runs the extraction into `output` with a background reader on `targets`.

    Returns:
        `(reader report, stdout, (ready_s, done_s, exit_s))`: seconds from the start until the
        parts folder appeared, until both caches existed, until the process exited.
    """
    logs = setup.path("logs")
    os.makedirs(logs, exist_ok=True)
    out_path, err_path = os.path.join(logs, "reference.stdout"), os.path.join(logs, "reference.stderr")
    with readers.background_reader(targets.values()) as report, open(out_path, "w") as out, \
            open(err_path, "w") as err:
        start = time.monotonic()
        process = subprocess.Popen(setup.extract_command(output), cwd=setup.workdir, stdout=out,
                                   stderr=err)
        common.wait_until(lambda: common.parts_folders(output), process, setup.timeout)
        ready = time.monotonic() - start
        common.wait_until(lambda: all(os.path.exists(p) for p in targets.values()), process,
                          setup.timeout)
        done = time.monotonic() - start
        process.wait(setup.timeout)
        exit_s = time.monotonic() - start
    with open(out_path) as out, open(err_path, errors="replace") as err:
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"The reference extraction failed (exit {process.returncode}):\n{stderr}")
    return report, stdout, (ready, done, exit_s)


def run_reference(setup):
    """Part 1: the uninterrupted run. Returns `(Reference, [reader check])`."""
    output = setup.path("reference")
    targets = common.target_paths(output, os.path.basename(setup.dataset))
    report, stdout, (ready, done, exit_s) = timed_extraction(setup, output, targets)
    caches = {s: cache.read_cache(p) for s, p in targets.items()}
    digests = {s: common.cache_digest(c) for s, c in caches.items()}
    parts = {s: math.ceil(len(c.filenames) / setup.checkpoint_every) for s, c in caches.items()}
    reference = common.Reference(targets, caches, digests, parts, ready, done, exit_s)
    reader_ok, reader_summary = readers.judge_reader(
        report, {targets[s]: {digests[s]} for s in common.SPLITS}, ("not finished", "does not exist"))
    checks = [common.Check("reader", "reader during a fresh extraction", reader_ok, reader_summary)]
    rows = [(s, len(caches[s].filenames), len(caches[s].skipped), parts[s], caches[s].feature_shape,
             digests[s][:12]) for s in common.SPLITS]
    common.print_table(
        "1. reference run", ("split", "rows", "skipped", "parts", "feature shape", "digest"), rows,
        [f"command: {' '.join(setup.extract_command(output))}",
         f"parts folder after {ready:.1f}s, both caches after {done:.1f}s, "
         f"exit after {exit_s:.1f}s; stdout: {' | '.join(stdout.splitlines())}",
         f"reader polling the targets meanwhile: {common.verdict(reader_ok)} ({reader_summary})"])
    return reference, checks
