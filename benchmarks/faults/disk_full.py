"""Part 4 of the fault suite: a full disk.

A small tmpfs (as root; else RLIMIT_FSIZE in the child) holds a previous valid pair of caches; an
extraction with other settings (`--pooling=max --overwrite`) that cannot fit must exit non-zero with
one `extract_features: error: ...` line, no traceback, no temporary files, and the previous caches
intact. Two sizes: the disk fills while the parts are written, or during the merge. After the merge
case, the tmpfs is grown and the same command run again: it must finish, equal to an unhindered run
(the `--pooling=max` caches of part 3).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import time

from benchmarks.faults import common
from benchmarks.faults import readers

# stderr lines of TensorFlow's start-up and progress bars, left out of what the user sees.
NOISE = ("vgg16 ", "WARNING: All log", "I0000", "E0000", "W0000")


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
    """A `preexec_fn` that limits every file the child writes to `limit` bytes."""
    def preexec():
        import resource  # pylint: disable=g-import-not-at-top
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def previous_intact(ref, folder):
    """(ok, description): the reference caches placed in `folder` read back identical."""
    for split, path in ref.paths.items():
        kind, value = readers.read_outcome(os.path.join(folder, os.path.basename(path)))
        if kind != "complete" or value != ref.digests[split]:
            shown = common.shorten(value, 80) if kind != "complete" else ""
            return False, f"previous {split} cache: {kind} {shown}"
    return True, "previous caches read back identical"


def disk_full_run(setup, ref, folder, mode, preexec=None):
    """The --overwrite extraction that cannot fit. Returns (problems, details)."""
    command = setup.extract_command(folder, "--pooling=max", "--overwrite")
    start = time.monotonic()
    result = subprocess.run(command, cwd=setup.workdir, capture_output=True, text=True,
                            timeout=setup.timeout, preexec_fn=preexec)
    completed = common.Completed(command, result.returncode, result.stdout, result.stderr,
                                 time.monotonic() - start)
    error_ok, message = common.clean_error(completed, "extract_features")
    intact_ok, intact = previous_intact(ref, folder)
    tmp = common.temporary_files(folder)
    parts = [e for e in common.all_entries(folder) if e.endswith(".h5") and ".parts" in e]
    problems = [] if error_ok else [message]
    if not intact_ok:
        problems.append(intact)
    if tmp:
        problems.append(f"temporary files left: {', '.join(tmp)}")
    detail = {"message": message, "tmp": tmp, "parts": parts, "completed": completed,
              "intact": intact, "mode": mode}
    return problems, detail


def describe_run(name, folder, detail):
    """Notes for the table: what the user saw on stderr, and what the folder holds."""
    shown = common.visible_lines(detail["completed"].stderr)
    user_sees = [l for l in shown if not l.startswith(NOISE)]
    notes = [f"[{name}] stderr, {len(shown)} lines; without TensorFlow's start-up lines "
             f"and progress bars the user sees:"]
    shown_lines = user_sees if len(user_sees) <= 8 else (
        user_sees[:3] + [f"... {len(user_sees) - 6} more lines ..."] + user_sees[-3:])
    notes += [f"    {common.shorten(l, 240)}" for l in shown_lines] or ["    <nothing>"]
    notes.append(f"[{name}] {detail['intact']}; parts kept for a resume: {len(detail['parts'])}, "
                 f"{common.folder_bytes(folder) // 1024} KiB in the folder")
    return notes


def disk_full_case(setup, ref, name, size, cache_size, room, max_caches):
    """One scenario: `(Check, table row, notes)`; the disk fills during `name` ("parts" or "merge")."""
    folder = setup.path("diskfull", name)
    with small_filesystem(folder, size) as mounted:
        if not mounted and name == "merge":
            return (common.Check("fault", "disk full during the merge", None,
                                 "not testable without a tmpfs (RLIMIT_FSIZE is per file)"),
                    (name, "n/a", "", "", "", "", "n/a"), [])
        common.place_previous_caches(ref, folder)
        preexec = None if mounted else limit_file_size(int(cache_size // 2))
        problems, detail = disk_full_run(setup, ref, folder, mounted or "RLIMIT_FSIZE", preexec)
        notes = describe_run(name, folder, detail)
        if name == "merge" and mounted:
            problems += resume_after_room(setup, folder, room, max_caches, notes)
    if problems:
        notes.append(f"[{name}] problems: {'; '.join(problems)}")
    completed = detail["completed"]
    row = (name, f"{detail['mode']} {int(size // 1024)} KiB", common.describe_exit(completed.returncode),
           f"{completed.seconds:.1f}s", len(detail["parts"]), len(detail["tmp"]), common.verdict(not problems))
    return common.Check("fault", f"disk full during the {name}", not problems, "; ".join(problems)), row, notes


def disk_full_checks(setup, ref, max_caches):
    """Part 4: a previous valid pair, then an --overwrite extraction that cannot fit."""
    cache_size = max(os.path.getsize(p) for p in ref.paths.values())  # a part holds one chunk too
    previous = sum(os.path.getsize(p) for p in ref.paths.values())
    scenarios = [("parts", previous + 2.5 * cache_size),
                 ("merge", previous + (ref.parts["train"] + 0.5) * cache_size)]
    rows, checks, notes = [], [], []
    for name, size in scenarios:
        check, row, more = disk_full_case(setup, ref, name, size, cache_size, previous + 64 * cache_size,
                                          max_caches)
        checks.append(check)
        rows.append(row)
        notes += more
    common.print_table("4. disk full (previous valid caches, then --pooling=max --overwrite that cannot fit)",
                       ("fills during", "filesystem", "exit", "time", "parts kept", "tmp left", "result"),
                       rows, notes)
    return checks


def resume_after_room(setup, folder, size, max_caches, notes):
    """Makes room and runs the same command again: it must finish, equal to an unhindered run."""
    if not grow_filesystem(folder, size):
        notes.append("[merge] could not grow the tmpfs; resume not tested")
        return []
    completed = common.run_command(setup.extract_command(folder, "--pooling=max", "--overwrite"),
                                   setup.workdir, setup.timeout)
    if completed.returncode != 0:
        return [f"after making room, the same command exits {completed.returncode}: "
                f"{common.shorten((common.visible_lines(completed.stderr) or [''])[-1])}"]
    if not max_caches:
        notes.append("[merge] after making room the run finished; no --pooling=max reference to compare")
        return []
    problems = []
    for split, path in max_caches.items():
        got = readers.read_outcome(os.path.join(folder, os.path.basename(path)))
        if got != readers.read_outcome(path):
            problems.append(f"after making room, the {split} cache differs from an unhindered run")
    leftovers = [e for e in common.all_entries(folder) if not e.endswith("features_train.h5")
                 and not e.endswith("features_validation.h5")]
    if leftovers:
        problems.append(f"after making room, left behind: {', '.join(leftovers[:3])}")
    notes.append(f"[merge] after making room, the same command finished in {completed.seconds:.1f}s"
                 f" ({'identical to' if not problems else 'NOT identical to'} an unhindered run)")
    return problems
