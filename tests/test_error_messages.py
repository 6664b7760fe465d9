"""Every error message the library raises is checked by a test (issue 14), and this file keeps it so.

`ast` walks `pipeline/`, `features/`, `classifiers/` and `bin/` and collects every `raise` whose
message holds literal text: string constants, f-strings' constant parts, `+` concatenations, `%` and
`.format` templates, a local variable the function assigned such text to, a module constant, or a
function of the same module that returns the message (or the exception). The argument checks of
`pipeline/checks.py` build their messages there, so its own raise sites stand for every
`checks.check_scalar(...)` and `check_choice(...)` call.

`MESSAGES` maps a distinctive literal fragment of each message (never a file or line: modules move)
to the test that checks it. The tests below fail, with a list, when a raise site has no entry, an
entry matches no raise site, a named test does not exist, or a named test's source (with the
module-level helpers and fixtures it uses) holds no three-word fragment of the message's literal
text, regex backslashes removed. `NO_TEXT` lists, by function, the raises that carry no text.
"""

import ast
import dataclasses
import os
import re
import sys

import pytest

from bottleneck_cache.pipeline import jobs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = ("pipeline", "features", "classifiers", "bin")
HOLE = "\x00"  # stands for the parts of a message computed at run time

# A distinctive literal fragment of each message -> "tests/<file>.py::<test function>" that checks it.
MESSAGES = {
}

# Raises whose message carries no literal text, as "<function>: <raise statement>" -> why.
NO_TEXT = {
    "__init__: raise": "CacheWriter removes its temporary file and re-raises the error that stopped it.",
    "decode_images: raise": "--on_bad_image=fail re-raises the decoder's DatasetError, whose messages are listed.",
    "_read_npz: raise": "lets the DatasetError raised inside the try (a listed message) pass its OSError handler.",
    "read_npy_weights: raise": "lets its own NetworkError (a listed message) pass the unpickling handler.",
    "_extract_plan: raise": "removes an empty working folder and re-raises whatever stopped the extraction.",
    "_construct: raise": "a constructor's own NetworkError (a listed message) passes Keras' error handler.",
    "call: raise SystemExit(1) from None": "the CLI exit after printing the ValueError's message in one line.",
    "_raise_interrupted: raise Interrupted(signum)": "SIGTERM as KeyboardInterrupt; the CLI prints the line.",
    "wrapped: raise SystemExit(1) from None": "exit status 1 after printing the UsageError's one line.",
    "wrapped: raise SystemExit(128 + signum) from None": "the shell's exit status for a signal, after one line.",
    "run: raise SystemExit(0)": "--version printed the version; exit 0.",
    "main: raise SystemExit(1)": "feature_extraction's batch: a failed job's error is in the summary it printed.",
}


@dataclasses.dataclass(frozen=True)
class RaiseSite:
    """One `raise` in the library: where, and its message with `HOLE` for run-time parts."""

    path: str
    line: int
    function: str
    statement: str
    template: str  # "" when the message carries no literal text

    def __str__(self):
        return f"{self.path}:{self.line} in {self.function}(): {self.template.replace(HOLE, '{}')!r}"


def _assignments(nodes):
    """Maps each simple name assigned (or `+=`-ed) among `nodes` to the values assigned."""
    names = {}
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, []).append(node.value)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name):
            if node.value is not None:
                names.setdefault(node.target.id, []).append(node.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[("def", node.name)] = node  # a nested function that may build a message
    return names


class _Module:
    """A parsed library file: its module-level functions and constants, for resolving messages."""

    def __init__(self, path, root=REPO):
        with open(os.path.join(root, path), encoding="utf-8") as file:
            self.tree = ast.parse(file.read(), path)
        self.path = path
        self.functions = {node.name: node for node in self.tree.body
                          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.constants = _assignments(self.tree.body)

    def message(self, exc, local):
        """The literal text of a raised exception's message; None if it has none."""
        if isinstance(exc, ast.Call) and not (isinstance(exc.func, ast.Name) and (
                exc.func.id in self.functions or ("def", exc.func.id) in local)):
            return _joined([self.text(argument, local) for argument in exc.args])  # any exception class
        return self.text(exc, local)

    def text(self, node, local, depth=0):
        """The literal text of a message expression, `HOLE` for run-time parts; None if it has none."""
        if depth > 4:
            return None
        again = lambda child, scope=local: self.text(child, scope, depth + 1)  # noqa: E731
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            return "".join(part.value if isinstance(part, ast.Constant)
                           else (again(part.value) if isinstance(part.value, ast.Name) and part.value.id in local
                                 else None) or HOLE
                           for part in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = again(node.left), again(node.right)
            return None if left is None and right is None else (left or HOLE) + (right or HOLE)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            left = again(node.left)
            return left and re.sub(r"%(\([^)]*\))?[-#0 +]*\d*(\.\d+)?[sdrifgexX]", HOLE, left)
        if isinstance(node, ast.IfExp):
            return _joined([again(node.body), again(node.orelse)])
        if isinstance(node, ast.Name):
            values = local.get(node.id) or self.constants.get(node.id, [])
            scope = local if node.id in local else {}
            return _joined([again(value, scope) for value in values])
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr == "format":
                template = again(function.value)
                return template and re.sub(r"\{[^{}]*\}", HOLE, template)
            parts = [again(argument) for argument in node.args]
            builder = isinstance(function, ast.Name) and (
                self.functions.get(function.id) or local.get(("def", function.id)))
            if builder:  # a function of this module (or a nested one) that builds the message
                scope = _assignments(ast.walk(builder))
                return _joined([again(child.value, scope) for child in ast.walk(builder)
                                if isinstance(child, ast.Return) and child.value is not None] + parts)
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            return _joined(parts) if name[:1].isupper() else None  # an exception's arguments, not str(x)
        return None


def _joined(texts):
    texts = [text for text in texts if text and text.strip(HOLE + " ")]
    return f" {HOLE} ".join(texts) if texts else None


def raise_sites():
    """Every `raise` under the library folders, as `RaiseSite`s, in file order."""
    sites = []
    for top in LIBRARY:
        for folder, subfolders, names in os.walk(os.path.join(REPO, top)):
            subfolders.sort()
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.relpath(os.path.join(folder, name), REPO)
                    sites.extend(_module_sites(_Module(path)))
    return sites


def _module_sites(module):
    sites = []

    def visit(node, function, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name, _assignments(ast.walk(child)))
                continue
            if isinstance(child, ast.Raise):
                template = module.message(child.exc, local) if child.exc is not None else None
                sites.append(RaiseSite(module.path, child.lineno, function, ast.unparse(child),
                                       " ".join((template or "").split())))
            visit(child, function, local)

    visit(module.tree, "<module>", {})
    return sites


def fragments(template):
    """Regexes for the message's fragments: each run of three literal words.

    A message whose literal text has no three words in a row (e.g. `check_scalar`'s) gets runs of
    three literal words with run-time parts between them, which match any text. A test may stop
    before the full stop or comma that ends a fragment.
    """
    tokens = template.split()
    literal = [HOLE not in token and bool(re.search(r"\w", token)) for token in tokens]
    windows = [tokens[i:i + 3] for i in range(len(tokens) - 2) if all(literal[i:i + 3])]
    if not windows:
        words = [i for i, is_word in enumerate(literal) if is_word]
        size = min(3, len(words))
        windows = [tokens[words[i]:words[i + size - 1] + 1] for i in range(len(words) - size + 1)
                   if size and words[i + size - 1] - words[i] <= size + 2]
    patterns = []
    for window in windows:
        window = [window[0].lstrip("('\"`")] + window[1:]
        window[-1] = window[-1].rstrip(".,;:)'\"`")
        patterns.append(re.compile(" ".join(".{0,200}?".join(re.escape(piece) for piece in token.split(HOLE))
                                            for token in window)))
    return patterns


def _normalized(text):
    return " ".join(text.replace("\\", "").split())


# --------------------------------------------------------------------------------------------------
# The tests' side: a test's source with the module-level helpers, cases and fixtures it uses.


class _TestFile:
    def __init__(self, path):
        self.path = path
        with open(os.path.join(REPO, path), encoding="utf-8") as file:
            self.source = file.read()
        self.tree = ast.parse(self.source, path)
        self.definitions = {}
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.definitions[node.name] = node
            for name in _assignments([node]):
                self.definitions[name] = node
        self.helpers = {}  # a name this file imports from the tests package -> that file
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "tests":
                for alias in node.names:
                    self.helpers[alias.asname or alias.name] = f"tests/{alias.name}.py"


_TEST_FILES = {}


def _test_file(path):
    if path not in _TEST_FILES:
        _TEST_FILES[path] = _TestFile(path) if os.path.isfile(os.path.join(REPO, path)) else None
    return _TEST_FILES[path]


def source_of_test(test_id):
    """The normalized text of a test and of what it uses; None if there is no such test."""
    path, _, name = test_id.partition("::")
    test_file = _test_file(path)
    if test_file is None or not isinstance(test_file.definitions.get(name), ast.FunctionDef):
        return None
    seen, texts, pending = set(), [], [(test_file, test_file.definitions[name], 0)]
    while pending:
        owner, node, depth = pending.pop()
        if (owner.path, id(node)) in seen:
            continue
        seen.add((owner.path, id(node)))
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        texts.append("\n".join(owner.source.splitlines()[start - 1:node.end_lineno]))
        texts.extend(child.value for child in ast.walk(node)
                     if isinstance(child, ast.Constant) and isinstance(child.value, str))
        if depth < 4:
            pending.extend((found[0], found[1], depth + 1) for found in _uses(owner, node))
    return _normalized("\n".join(texts))


def _uses(owner, node):
    """The definitions `node` refers to: in its own file, in conftest.py, or in an imported tests file."""
    conftest = _test_file("tests/conftest.py")
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name) \
                and child.value.id in owner.helpers:
            helper = _test_file(owner.helpers[child.value.id])
            if helper and child.attr in helper.definitions:
                yield helper, helper.definitions[child.attr]
        names = [child.id] if isinstance(child, ast.Name) else [child.arg] if isinstance(child, ast.arg) else []
        for name in names:
            for place in (owner, conftest):
                if place and name in place.definitions and place.definitions[name] is not node:
                    yield place, place.definitions[name]
                    break


# --------------------------------------------------------------------------------------------------
# The checks.


@pytest.fixture(scope="module")
def sites():
    return raise_sites()


def shown(template):
    return template.replace(HOLE, "{}")


def assign(sites, keys):
    """Maps each site with text to the keys that claim it.

    A key claims the sites whose message holds it ("{}" in a key stands for a run-time part);
    where several keys match a site, the one that matches the fewest messages claims it (the
    key of a message built by a shared function beats a key of that function's common text).
    """
    messages = {}
    for key in keys:
        messages[key] = {site.template for site in sites if key in shown(site.template)}
    claims = {}
    for site in sites:
        if site.template:
            matching = [key for key in keys if site.template in messages[key]]
            fewest = min((len(messages[key]) for key in matching), default=0)
            claims[site] = [key for key in matching if len(messages[key]) == fewest]
    return claims


def test_the_walk_finds_the_library(sites):
    assert len({site.path for site in sites}) > 20
    assert any(site.path.endswith("checks.py") and "Received:" in site.template for site in sites)


def test_every_message_has_one_registry_entry(sites):
    claims = assign(sites, MESSAGES)
    missing = [str(site) for site, keys in claims.items() if not keys]
    several = [f"{site}: {keys}" for site, keys in claims.items() if len(keys) > 1]
    assert not missing, ("Raise sites whose message has no entry in MESSAGES (add a distinctive fragment "
                         "and the test that checks it):\n" + "\n".join(missing))
    assert not several, "Raise sites claimed by several MESSAGES keys:\n" + "\n".join(several)


def test_every_registry_entry_matches_one_message(sites):
    messages = {key: set() for key in MESSAGES}
    for site, keys in assign(sites, MESSAGES).items():
        for key in keys:
            messages[key].add(site.template)
    stale = [repr(key) for key, templates in messages.items() if not templates]
    ambiguous = [f"{key!r} claims {len(templates)} different messages"
                 for key, templates in messages.items() if len(templates) > 1]
    assert not stale, ("MESSAGES keys that match no raise site (moved or reworded? fix the key):\n"
                       + "\n".join(stale))
    assert not ambiguous, "MESSAGES keys not distinctive enough:\n" + "\n".join(ambiguous)


def test_every_named_test_exists():
    missing = [f"{key!r}: {test_id}" for key, test_id in MESSAGES.items() if source_of_test(test_id) is None]
    assert not missing, "MESSAGES names tests that do not exist:\n" + "\n".join(missing)


def checks_message(source, key, template, others):
    """Whether a test's `source` checks the message `template`, whose registry key is `key`.

    It must hold a fragment of the message (`fragments`), and either the key too or a fragment
    found in none of the `others`, the other messages of its module (messages built by one
    function share its text).
    """
    found = [pattern for pattern in fragments(template) if pattern.search(source)]
    key_pattern = ".{0,200}?".join(re.escape(part) for part in _normalized(key).split("{}"))
    if re.search(key_pattern, source):
        return bool(found)
    return any(not any(pattern.search(shown(other)) for other in others) for pattern in found)


def test_every_named_test_checks_its_message(sites):
    claimed, neighbours = {}, {}
    for site, keys in assign(sites, MESSAGES).items():
        neighbours.setdefault(site.path, set()).add(site.template)
        for key in keys:
            claimed[key] = site
    unchecked = []
    for key, test_id in MESSAGES.items():
        source = source_of_test(test_id)
        site = claimed.get(key)
        if site and source is not None and not checks_message(
                source, key, site.template, neighbours[site.path] - {site.template}):
            unchecked.append(f"{test_id} does not check {shown(site.template)!r}")
    assert not unchecked, "Tests that do not check the message named for them:\n" + "\n".join(unchecked)


def test_raises_without_text_are_listed(sites):
    found = {f"{site.function}: {site.statement}" for site in sites if not site.template}
    unlisted = sorted(found - set(NO_TEXT))
    stale = sorted(set(NO_TEXT) - found)
    assert not unlisted, ("Raises without literal text: give the message text, or add them to NO_TEXT "
                          "with a reason:\n" + "\n".join(unlisted))
    assert not stale, "NO_TEXT entries that match no raise anymore:\n" + "\n".join(stale)
    assert all(reason.strip() for reason in NO_TEXT.values())


# --------------------------------------------------------------------------------------------------
# The walk itself, on a small module.


def test_message_text_of_each_form(tmp_path):
    source = '''
HINT = "Pass --weights=none " + "for random weights."

def _message(value):
    return f"Expected a built message. Received: {value}."

def _error(value):
    return ValueError("Expected a built error. Received: %s." % value)

def check(value, name):
    if value < 0:
        raise ValueError(f"Expected {name} >= 0. Received: {name}={value}. Pass a count.")
    if value == 1:
        raise ValueError("Expected no " + name + " of one. Received one.")
    if value == 2:
        raise ValueError("Expected {} to differ from {}. Received: two.".format(name, value))
    if value == 3:
        message = "Expected an odd value"
        message += f" other than {value}."
        raise ValueError(message)
    if value == 4:
        raise ValueError(HINT)
    if value == 5:
        raise ValueError(_message(value))
    if value == 6:
        raise _error(value) from None
    try:
        pass
    except OSError as error:
        raise ValueError(error) from None
    raise
'''
    (tmp_path / "probe.py").write_text(source)
    found = [site.template.replace(HOLE, "{}") for site in _module_sites(_Module("probe.py", str(tmp_path)))]
    assert found == [
        "Expected {} >= 0. Received: {}={}. Pass a count.",
        "Expected no {} of one. Received one.",
        "Expected {} to differ from {}. Received: two.",
        "Expected an odd value {} other than {}.",
        "Pass --weights=none for random weights.",
        "Expected a built message. Received: {}.",
        "Expected a built error. Received: {}.",
        "",
        "",
    ]


# --------------------------------------------------------------------------------------------------
# Messages whose module has no test file of its own.


def test_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ValueError, match=r"^Expected Ray for --executor=ray\. Received: the ray package is not "
                       r"installed\. Install it with pip install -e '\.\[ray\]' \(or pip install 'ray>=2\.9'\)\.$"):
        with jobs.ray_session():
            pass
