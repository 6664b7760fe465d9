"""The installed distribution adds one top-level name, `bottleneck_cache`, and lists every package."""

import configparser
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("pipeline", "features", "classifiers", "bin")


def _options():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["options"]


def _lines(value):
    return [line.split("=")[0].strip() for line in value.strip().splitlines()]


def test_every_folder_with_an_init_is_a_listed_package():
    expected = sorted(
        "bottleneck_cache." + ".".join(init.parent.relative_to(ROOT).parts)
        for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py"))
    assert sorted(_lines(_options()["packages"])) == expected


def test_the_four_folders_map_to_the_namespace():
    assert _lines(_options()["package_dir"]) == [f"bottleneck_cache.{folder}" for folder in FOLDERS]


def test_console_scripts_point_into_the_namespace():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = config["options.entry_points"]["console_scripts"].strip().splitlines()
    assert scripts and all(" = bottleneck_cache.bin." in line for line in scripts)


def test_no_module_imports_the_bare_folder_names():
    bare = ("from pipeline", "from features", "from classifiers", "from bin",
            "import pipeline", "import features", "import classifiers", "import bin")
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for folder in (*FOLDERS, "tests", "benchmarks", "examples", "docs")
                 for path in (ROOT / folder).rglob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if line.strip().startswith(bare)]
    assert offenders == []


@pytest.mark.slow
def test_the_wheel_holds_one_top_level_name(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(tmp_path / "wheel")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = archive.read(next(n for n in names if n.endswith("top_level.txt"))).decode().split()
    assert top_level == ["bottleneck_cache"]
    assert {name.split("/")[0] for name in names} == {"bottleneck_cache", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "bottleneck_cache/pipeline/cache.py" in names or "bottleneck_cache/pipeline/cache/__init__.py" in names
