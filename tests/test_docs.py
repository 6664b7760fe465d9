"""The documentation holds what the commands do: flags and defaults as --help shows them."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "docs"))
import make_flag_reference  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


def test_flag_reference_is_generated_from_the_flag_definitions():
    with open(make_flag_reference.OUTPUT, encoding="utf-8") as f:
        written = f.read()
    assert written == make_flag_reference.reference(), (
        "docs/flags.md is out of date: run python docs/make_flag_reference.py")


def _help_defaults(command):
    """`{flag: default or None}` from the command's own `--help` (its key flags only)."""
    result = subprocess.run([sys.executable, "-m", f"bin.{command}", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    text = result.stdout.split("\nflags:\n", 1)[1].split("\nabsl.", 1)[0]
    found, name = {}, None
    for line in text.splitlines():
        match = re.match(r"  --(?:\[no\])?(\w+):", line)
        if match:
            name = match.group(1)
            found[name] = None
        default = re.search(r"\(default: (.*)\)$", line.strip())
        if default and name:
            found[name] = default.group(1)
    return found


@pytest.mark.parametrize("command", make_flag_reference.COMMANDS)
def test_every_flag_is_documented_with_the_default_help_shows(command):
    section = make_flag_reference.command_reference(command)
    defaults = _help_defaults(command)
    assert defaults, f"no flags parsed from {command} --help"
    for name, default in defaults.items():
        if name == "version":
            continue  # Every command's; named once at the top of docs/flags.md.
        row = re.search(rf"^\| `--{name}` \| (.*?) \|", section, re.MULTILINE)
        assert row, f"--{name} of {command} is not in docs/flags.md"
        assert row.group(1) == ("" if default is None else f"`{default}`"), name


def test_user_documentation_names_no_development_machine_path():
    paths = [os.path.join(ROOT, "README.md")] + [
        os.path.join(folder, name) for folder, _, names in os.walk(os.path.join(ROOT, "docs"))
        for name in names if name.endswith(".md")]
    for path in paths:
        with open(path, encoding="utf-8") as f:
            assert "shared/" not in f.read(), f"{path} names a development machine's folder"
