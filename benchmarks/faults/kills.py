"""Part 2 of the fault suite: kills and resumes.

`--kills` extractions are SIGKILLed at seeded random moments between TensorFlow's start-up (the
hidden parts folder appears) and the end of the work. Each waits for a random number of finished
parts or merges (stratified over the whole run; the first kill always within the first part), then
a random fraction of one part's time, so that kills land before the first part, while a part or a
merge is written, between parts and between splits. One more SIGKILL is aimed at the moment the
training cache appears (between its merge and the removal of its parts), and `--sigterms` runs get
a SIGTERM instead (expected: exit 143, no temporary files left).

After each signal, `read_cache` on the targets must give the reference file or a clear error; then
the same command is run to completion and its caches are compared with the reference (features bit
for bit, labels, file names, skipped list, fingerprint; rows lost, duplicated), with nothing left
behind in the folder. `--jobs` trials run at once.
"""

import collections
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import time

import numpy as np

from benchmarks.faults import common
from benchmarks.faults import readers
from bottleneck_cache.pipeline import cache


# ------------------------------------------------------------------------------------------------
# What an extraction has on disk.


def split_state(output_dir, entries, target, total_parts):
    """`(description, category or None, finished parts)` of one split of an extraction."""
    done = os.path.exists(target)
    folders = [e for e in entries if cache.is_parts_folder(e, target)]
    if done and folders:
        return "merged, parts not yet removed", "after a merge, before cleanup", 0
    if done:
        return "done", None, 0
    if any(e.startswith(cache.working_prefix(target)) and e.endswith(".tmp") for e in entries):
        return "merging", "during a merge", 0
    if not folders:
        return None, None, 0
    files = os.listdir(os.path.join(output_dir, folders[0]))
    parts = sum(f.startswith("part-") and f.endswith(".h5") for f in files)
    writing = any(f.endswith(".tmp") for f in files)
    description = f"{parts}/{total_parts} parts" + (", next being written" if writing else "")
    if writing:
        return description, "during the first part" if parts == 0 else "during a part", parts
    return description, "before the first part" if parts == 0 else "between parts", parts


def kill_state(output_dir, targets, total_parts):
    """Describes what an extraction had on disk: (category, description, finished parts)."""
    entries = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    description, categories, finished = [], [], 0
    for split in common.SPLITS:
        text, category, parts = split_state(output_dir, entries, targets[split], total_parts[split])
        finished += parts
        if text:
            description.append(f"{split} {text}")
        if category:
            categories.append(category)
    if not categories:
        done = [s for s in common.SPLITS if os.path.exists(targets[s])]
        categories.append("after both caches" if len(done) == 2 else "between splits")
    return categories[0], "; ".join(description) or "nothing yet", finished


def progress_units(output_dir, targets, parts):
    """Finished work: one unit per finished part, one per finished merge (a split's cache)."""
    units = 0
    entries = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    for split in common.SPLITS:
        if os.path.exists(targets[split]):
            units += parts[split] + 1
            continue
        for entry in entries:
            if cache.is_parts_folder(entry, targets[split]):
                with contextlib.suppress(OSError):
                    units += sum(f.startswith("part-") and f.endswith(".h5")
                                 for f in os.listdir(os.path.join(output_dir, entry)))
    return units


# ------------------------------------------------------------------------------------------------
# Signalling an extraction.


def progress_moment(output_dir, targets, parts, goal, unit_seconds, timeout):
    """A `when` for `signal_run`: `goal` units of progress (e.g. 6.4 = 6 units, then 0.4 of one).

    The fraction is timed with the run's own pace so far (or `unit_seconds` before the first unit),
    so kills spread the same way on a busy machine.
    """
    whole, rest = int(goal), goal - int(goal)

    def wait(process, ready):
        common.wait_until(lambda: progress_units(output_dir, targets, parts) >= whole, process, timeout)
        reached = time.monotonic()
        unit = (reached - ready) / whole if whole else unit_seconds
        common.wait_until(lambda: time.monotonic() - reached >= rest * unit, process, timeout, 0.001)

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
            if not common.wait_until(lambda: common.parts_folders(output_dir), process, setup.timeout):
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
# Resuming and comparing.


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
        completed = common.run_command(command, setup.workdir, setup.timeout)
        if completed.returncode not in (128 + signal.SIGTERM, -signal.SIGTERM):
            return completed, attempt
    return completed, attempts


def compare_with_reference(setup, ref, output):
    """`(problems, lost, duplicated)` of the caches in `output` against the reference."""
    problems, lost, duplicated = [], 0, 0
    for split in common.SPLITS:
        path = common.target_paths(output, os.path.basename(setup.dataset))[split]
        try:
            got = cache.read_cache(path)
        except cache.CacheError as error:
            problems.append(f"{split}: {common.shorten(error)}")
            lost += len(ref.caches[split].filenames)
            continue
        identical, split_lost, split_dup, changed = compare_caches(got, ref.caches[split])
        lost, duplicated = lost + split_lost, duplicated + split_dup
        if not identical:
            problems.append(f"{split} differs from the reference ({changed} rows with other features)")
    expected = sorted(os.path.basename(p) for p in ref.paths.values())
    leftovers = [e for e in common.all_entries(output) if e not in expected]
    if leftovers:
        problems.append(f"left behind: {', '.join(leftovers[:3])}{' ...' if len(leftovers) > 3 else ''}"
                        f" ({len(leftovers)} entries, {common.folder_bytes(output) // 1024} KiB in the folder)")
    return problems, lost, duplicated


def resume_and_compare(setup, ref, output, command):
    """Runs `command` to completion; returns (ok, problems, lost, duplicated, seconds, stdout)."""
    completed, external = run_to_completion(setup, command)
    problems = []
    if external:
        print(f"   note: the run again in {output} got {external} SIGTERM(s) from outside this script "
              "(another user's pkill?); it was started again", flush=True)
    if completed.returncode != 0:
        problems.append(f"resume exit {completed.returncode}: "
                        f"{common.shorten((common.visible_lines(completed.stderr) or [''])[-1])}")
    more, lost, duplicated = compare_with_reference(setup, ref, output)
    problems += more
    return not problems, problems, lost, duplicated, completed.seconds, completed.stdout


def reads_after_kill(ref, targets):
    """read_cache on each target of a killed run: the reference file or a clear error."""
    outcomes, ok = [], True
    for split in common.SPLITS:
        kind, value = readers.read_outcome(targets[split])
        if kind == "complete":
            if value != ref.digests[split]:
                kind, ok = "OTHER CONTENT", False
        elif kind not in ("not finished", "does not exist"):
            kind, ok = f"{kind}: {common.shorten(value, 60)}", False
        outcomes.append(kind)
    return ok, "/".join(outcomes)


# ------------------------------------------------------------------------------------------------
# Trials.


def signal_problems(sig, code, stderr, exited, output):
    """What is wrong with how the signalled extraction ended (nothing when it exited before)."""
    problems = []
    if exited:
        return problems
    if sig == signal.SIGTERM:
        tmp = common.temporary_files(output)
        if code not in (143, 0):
            problems.append(f"SIGTERM exit {code} (expected 143)")
        if "Traceback (most recent call last)" in stderr:
            problems.append("traceback on SIGTERM")
        if tmp:
            problems.append(f"temporary files after SIGTERM: {', '.join(tmp)}")
    elif sig == signal.SIGKILL and code != -signal.SIGKILL:
        problems.append(f"exit {code} after SIGKILL")
    return problems


def kill_trial(setup, ref, label, index, sig, goal):
    """One fault: signal an extraction at `goal` units of progress (None: when the training cache
    appears), check what it left, run the same command again, compare with the reference."""
    output = setup.path("kills", f"{label}-{index:02d}")
    command = setup.extract_command(output)
    targets = common.target_paths(output, os.path.basename(setup.dataset))
    if goal is None:
        def when(process, ready):
            del ready
            common.wait_until(lambda: os.path.exists(targets["train"]), process, setup.timeout, 0.0003)
    else:
        units = sum(ref.parts.values()) + len(common.SPLITS)
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
    problems += signal_problems(sig, code, stderr, exited, output)
    _, more, lost, duplicated, seconds, _ = resume_and_compare(setup, ref, output, command)
    problems += more
    aim = "train cache" if goal is None else f"{goal:4.1f}"
    row = (f"{label} {index}", signal.Signals(sig).name, aim, f"{at:5.2f}s", category, description,
           code, reads, finished, f"{seconds:4.1f}s", lost, duplicated, common.verdict(not problems))
    check = common.Check("fault", f"{signal.Signals(sig).name} #{index} ({category})", not problems,
                         "; ".join(problems), lost, duplicated)
    return row, check


def kill_schedule(ref, kills, sigterms, rng):
    """(label, index, signal, goal) for every trial.

    Goals are in units of progress (finished parts and merges of both splits), stratified over the
    whole run for the kills (the first one always within the first part); None aims at the moment
    the training cache appears.
    """
    units = sum(ref.parts.values()) + len(common.SPLITS)
    schedule = [("kill", i, signal.SIGKILL, units * (i + rng.random()) / kills) for i in range(kills)]
    schedule[0] = ("kill", 0, signal.SIGKILL, rng.random())  # always one within the first part
    schedule += [("term", i, signal.SIGTERM, units * rng.uniform(0.1, 0.9)) for i in range(sigterms)]
    # Aimed: between the training merge's rename and the removal of its parts.
    schedule.append(("aimed", 0, signal.SIGKILL, None))
    return schedule


def kill_checks(setup, ref, kills, sigterms, jobs, rng):
    """Part 2: every trial of `kill_schedule`, `jobs` at a time. Returns the checks."""
    schedule = kill_schedule(ref, kills, sigterms, rng)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda trial: kill_trial(setup, ref, *trial), schedule))
    rows, checks = [r for r, _ in results], [c for _, c in results]
    notes = [f"{c.name}: {c.detail}" for c in checks if c.detail]
    categories = collections.Counter(r[4] for r in rows)
    notes.append("kill moments: " + ", ".join(f"{k} {n}" for k, n in categories.most_common()))
    notes.append(f"aim: units of progress out of {sum(ref.parts.values()) + len(common.SPLITS)} (each "
                 f"finished part or merge is one); t: seconds after the parts folder appeared; {jobs} "
                 "trial(s) at a time")
    common.print_table("2. kills (signal at the aimed moment, then the same command again)",
                       ("trial", "signal", "aim", "t", "moment", "on disk at the signal", "exit",
                        "reads (train/val)", "parts kept", "resume", "lost", "dup", "result"), rows, notes)
    return checks
