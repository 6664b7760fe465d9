"""What the benchmarks share: timing a command with its peak memory."""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# The defaults of --data_dir and --weights_dir, what those folders hold, and the look-ups in them: the
# examples' (one definition for both).
# pylint: disable=wrong-import-position,unused-import
from examples.common import DATA_DIR, DATASETS, WEIGHTS_DIR, WEIGHTS_FILES
from examples.common import dataset_folder, weights_file
# pylint: enable=wrong-import-position,unused-import

# Where /usr/bin/time is missing: run the command as a child and report its peak RSS.
_RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} 0\\n")
sys.exit(code)
"""


def timed_command(arguments, env, scratch):
    """Runs a command from the repository root.

    Returns:
        `(wall seconds, peak RSS KiB of the command, its stdout)`.

    Raises:
        SystemExit: the command failed (with the end of its stderr).
    """
    report = os.path.join(scratch, "rss.txt")
    if os.path.exists("/usr/bin/time"):
        wrapped = ["/usr/bin/time", "-f", "%M %e", "-o", report, *arguments]
    else:
        wrapped = [sys.executable, "-c", _RSS_WRAPPER, report, *arguments]
    start = time.perf_counter()
    result = subprocess.run(wrapped, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"failed: {' '.join(arguments)}\n{result.stderr[-3000:]}")
    with open(report, encoding="utf-8") as f:
        rss = int(f.read().split()[0])
    return seconds, rss, result.stdout
