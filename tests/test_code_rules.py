"""House rules that the library's source keeps, read with `ast` (no import, no run).

* No function in `pipeline/`, `features/`, `classifiers/` or `bin/` is longer
  than `MAX_FUNCTION_LINES`, from its `def` to its last line, its docstring not
  counted (split a longer one into named steps).
* No module imports or uses another module's private name: `from x import _y`
  or `module._y` (make the name public instead). Dunder names are not private.
* Only the cache package (`pipeline/cache.py` or `pipeline/cache/`) imports
  h5py: every other module reads and writes caches through it.

Each rule is a function returning its violations as `"path:line: what"`
strings; the tests below run it over the tree and over small snippets that
break it, so that a rule which stopped finding anything would fail too.
"""

import ast
import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = ("pipeline", "features", "classifiers", "bin")
MAX_FUNCTION_LINES = 60


def library_files():
    """`(path relative to ROOT, source)` of every `.py` file under the library folders, recursively."""
    found = []
    for folder in LIBRARY:
        for directory, subfolders, names in os.walk(os.path.join(ROOT, folder)):
            subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    with open(path, encoding="utf-8") as f:
                        found.append((os.path.relpath(path, ROOT), f.read()))
    return found


def long_functions(path, source, limit=MAX_FUNCTION_LINES):
    """Functions (nested ones too) longer than `limit` lines, their docstrings not counted."""
    found = []
    for node in ast.walk(ast.parse(source, path)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        if ast.get_docstring(node, clean=False) is not None:
            docstring = node.body[0]
            length -= docstring.end_lineno - docstring.lineno + 1
        if length > limit:
            found.append(f"{path}:{node.lineno}: {node.name} is {length} lines (at most {limit})")
    return found


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path, source):
    """`from x import _y` and `module._y` where `module` is a name bound by an import."""
    tree = ast.parse(source, path)
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(f"{path}:{node.lineno}: from {'.' * node.level}{node.module or ''} "
                                 f"import {alias.name}")
                modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def _is_cache_package(path):
    parts = path.replace(os.sep, "/").split("/")
    return parts[:2] == ["pipeline", "cache.py"] or parts[:2] == ["pipeline", "cache"]


def h5py_imports(path, source):
    """`import h5py` (or `from h5py ...`, or `importlib.import_module("h5py")`) outside the cache package."""
    if _is_cache_package(path):
        return []
    found = []
    for node in ast.walk(ast.parse(source, path)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")):
            names = [str(node.args[0].value)]
        if any(name.split(".")[0] == "h5py" for name in names):
            found.append(f"{path}:{node.lineno}: imports h5py (only the cache package may)")
    return found


def test_library_is_found():
    paths = [path for path, _ in library_files()]
    for expected in ("bin/cli.py", "features/networks.py", "classifiers/predict.py"):
        assert os.path.join(*expected.split("/")) in paths
    assert any(_is_cache_package(path) for path in paths)


@pytest.mark.parametrize("rule", [long_functions, private_uses, h5py_imports])
def test_library_keeps_the_rule(rule):
    found = [line for path, source in library_files() for line in rule(path, source)]
    assert not found, "\n".join(found)


def test_long_functions_counts_code_not_docstring():
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    docstring = '    """A docstring\n\n    of many\n    lines.\n    """\n'
    short = f"def short():\n{docstring}{body}"  # def + 59 lines: 60.
    assert long_functions("m.py", short) == []
    inner = textwrap.indent(f"def inner():\n{docstring}{body}    pass\n", "    ")
    found = long_functions("m.py", f"def outer():\n{inner}")
    assert [line.split(": ")[1].split(" ")[0] for line in found] == ["outer", "inner"]
    # The outer function counts the inner one's docstring (5 lines): only its own is left out.
    assert "outer is 67 lines" in found[0] and "inner is 61 lines" in found[1]


def test_private_uses_finds_both_forms():
    source = ("import os\nfrom bottleneck_cache.pipeline import cache\nfrom x.y import _hidden, public\n"
              "class A:\n    def f(self):\n        return self._own, os.__name__, cache._reader(), "
              "cache.public._inner\n")
    found = sorted(private_uses("m.py", source))
    assert found == ["m.py:3: from x.y import _hidden", "m.py:6: cache._reader",
                     "m.py:6: cache.public._inner"]
    assert private_uses("m.py", "from . import _sibling\n") == ["m.py:1: from . import _sibling"]


def test_h5py_imports_only_in_the_cache_package():
    source = "import h5py\nimport importlib\nfrom h5py import File\nimportlib.import_module('h5py')\n"
    assert len(h5py_imports(os.path.join("features", "x.py"), source)) == 3
    assert h5py_imports(os.path.join("pipeline", "cache.py"), source) == []
    assert h5py_imports(os.path.join("pipeline", "cache", "writer.py"), source) == []
    assert h5py_imports(os.path.join("pipeline", "cache_tools.py"), source) != []
