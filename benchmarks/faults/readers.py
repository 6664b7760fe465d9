"""Part 3 of the fault suite: readers. Also how every part reads a cache and judges what it saw.

A reader must only ever see a complete cache (the reference's bytes, or the new file of an
--overwrite run) or one of the two clear errors of a cache still being written ("is not finished",
"does not exist"). Checks:

* 4 processes reading the reference training cache at once (all 40 reads identical);
* a reader polling a pair of complete caches while an `--overwrite` extraction (`--pooling=max`)
  replaces them: every read is the old file or the new one, never anything else.

The reference run (part 1) polls its targets with `background_reader` too; its check is printed in
this part's table.
"""

import collections
import contextlib
import multiprocessing
import os
import time

from benchmarks.faults import common
from bottleneck_cache.pipeline import cache


def read_outcome(path):
    """One `read_cache` call: ('complete', digest), or (kind, message) where kind is 'not finished',
    'does not exist' (the two clear errors of a cache being written), 'CacheError' (any other
    refusal) or 'exception' (anything that is not a CacheError)."""
    try:
        return "complete", common.cache_digest(cache.read_cache(path))
    except cache.CacheError as error:
        message = str(error)
        if "is not finished" in message and "resume" in message:
            return "not finished", message
        if "does not exist" in message:
            return "does not exist", message
        return "CacheError", message
    except Exception as error:  # pylint: disable=broad-except
        return "exception", f"{type(error).__name__}: {error}"


# Run in spawned processes: top-level functions.


def reader_loop(paths, stop, queue, pause):
    """Reads `paths` over and over until `stop` is set (then once more); reports what it saw."""
    counts, digests, errors = collections.Counter(), {p: collections.Counter() for p in paths}, []
    while True:
        final = stop.is_set()
        for path in paths:
            kind, value = read_outcome(path)
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
    barrier.wait(timeout=120)
    queue.put([read_outcome(path) for _ in range(times)])


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
        summary += f"; e.g. {common.shorten(report['errors'][0], 150)}"
    return ok, summary


# ------------------------------------------------------------------------------------------------
# The checks.


def concurrent_readers(ref, processes=4, times=10):
    """`processes` spawned readers, started together at a barrier, each reading `times` times."""
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
    return common.Check("reader", f"{processes} concurrent readers", ok,
                        f"{good}/{processes * times} reads identical to the reference"
                        + (f"; e.g. {common.shorten(bad[0], 150)}" if bad else ""))


def reader_during_overwrite(setup, ref):
    """A reader polls old complete caches while an --overwrite extraction replaces them.

    Returns:
        `(Check, {split: path of the new --pooling=max cache})`, the dict empty when the
        extraction failed.
    """
    folder = setup.path("readers")
    os.makedirs(folder, exist_ok=True)
    common.place_previous_caches(ref, folder)
    paths = {s: os.path.join(folder, os.path.basename(p)) for s, p in ref.paths.items()}
    with background_reader(paths.values()) as report:
        time.sleep(1.0)  # let the reader start before the extraction
        completed = common.run_command(setup.extract_command(folder, "--pooling=max", "--overwrite"),
                                       setup.workdir, setup.timeout)
    new = {s: read_outcome(p) for s, p in paths.items()}
    allowed = {paths[s]: {ref.digests[s], new[s][1]} for s in common.SPLITS}
    ok, summary = judge_reader(report, allowed, ())
    final = all(kind == "complete" for kind, _ in new.values()) and completed.returncode == 0
    if not final:
        ok, summary = False, f"{summary}; the extraction itself: exit {completed.returncode}"
    seen = report.get("digests", {})
    saw_old = sum(seen.get(paths[s], {}).get(ref.digests[s], 0) for s in common.SPLITS)
    saw_new = sum(seen.get(paths[s], {}).get(new[s][1], 0) for s in common.SPLITS)
    summary += f" (old file {saw_old}x, new file {saw_new}x)"
    max_caches = paths if final else {}
    return common.Check("reader", "reader during an --overwrite extraction", ok, summary), max_caches


def reader_checks(setup, ref, reference_checks):
    """Part 3. Returns `(checks, {split: path of a --pooling=max cache})` (for parts 4 and 6)."""
    checks = [concurrent_readers(ref)]
    check, max_caches = reader_during_overwrite(setup, ref)
    checks.append(check)
    every = reference_checks + checks
    common.print_table("3. readers", ("check", "result", "what the readers saw"),
                       [(c.name, common.verdict(c.ok), c.detail) for c in every])
    return checks, max_caches
