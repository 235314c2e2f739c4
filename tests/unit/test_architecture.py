"""The shape of the package: imports flow one way (core -> local/kube/s3/devtools -> cli -> launch), no
import cycles, no toolbox import hidden inside a function, no module far beyond ~500 lines."""
import ast
import re

import pytest
from conftest import ROOT

# Layers, lowest first. A module may import its own package and any lower layer, never a sibling of the
# same rank nor anything above it.
RANKS = {"toolbox": 0, "errors": 0, "core": 1, "local": 2, "kube": 2, "s3": 2, "devtools": 2, "report": 2,
         "kubeutils": 3, "s3utils": 3, "utils": 3, "cli": 4, "launch": 5}
# Imports inside functions are allowed only to defer a heavy third-party package until it is needed.
DEFERRED = {("launch", "cli.main"),                 # launch.py registers the package first
            ("s3.transfer", "s3.backends.s5cmd"),   # only the chosen backend is imported
            ("s3.transfer", "s3.backends.boto")}
MAX_LINES = 520


def modules():
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "bench", "examples", "build", ".venv") or rel.parts[0].startswith("."):
            continue
        name = ".".join(rel.with_suffix("").parts)
        name = name.removesuffix(".__init__")
        found["toolbox" if name == "__init__" else name] = path
    return found


def toolbox_imports(tree, known):
    """(imported module, inside a function?) for every toolbox import of a module; `from toolbox.kube import
    render` names the module kube.render, `from toolbox.kube.render import Renderer` too."""
    result = []

    def target(module, name):
        dotted = f"{module}.{name}"[len("toolbox."):] if module != "toolbox" else name
        if dotted in known:
            return dotted
        return module[len("toolbox."):] if module != "toolbox" else "toolbox"

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "toolbox":
                result.extend((target(child.module, a.name), nested) for a in child.names)
            elif isinstance(child, ast.Import):
                result.extend((a.name[len("toolbox."):], nested) for a in child.names
                              if a.name.startswith("toolbox."))
            visit(child, nested)

    visit(tree, False)
    return result


def layer(module):
    return module.split(".")[0]


@pytest.fixture(scope="module")
def graph():
    mods = modules()
    edges = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges[name] = toolbox_imports(tree, set(mods))
    return mods, edges


def test_imports_flow_one_way(graph):
    _, edges = graph
    upward = []
    for name, targets in edges.items():
        for target, _ in targets:
            if target == "toolbox" or layer(target) == layer(name):
                continue
            if RANKS[layer(target)] >= RANKS[layer(name)]:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports against the layering (core -> local/kube/s3 -> cli -> launch):\n" + "\n".join(upward)


def test_no_import_cycles(graph):
    mods, edges = graph
    known = set(mods)

    def resolve(target):
        return target if target in known else None

    state, cycles = {}, []

    def walk(node, stack):
        state[node] = "active"
        stack.append(node)
        for target, _ in edges.get(node, []):
            target = resolve(target)
            if target is None or target == node:
                continue
            if state.get(target) == "active":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                walk(target, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(mods):
        if name not in state:
            walk(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_toolbox_imports_are_at_module_level(graph):
    _, edges = graph
    hidden = [f"{name} imports {target} inside a function" for name, targets in edges.items()
              for target, nested in targets if nested and (name, target) not in DEFERRED]
    assert not hidden, "\n".join(hidden)


def test_every_layer_is_a_known_package(graph):
    mods, _ = graph
    assert {layer(name) for name in mods} <= set(RANKS)


def test_modules_stay_small(graph):
    mods, _ = graph
    long = [f"{name}: {n} lines" for name, path in mods.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "split these by concern:\n" + "\n".join(long)


def makefile_rules():
    """target -> the launch.py command its recipe runs; and the USER_VARS list."""
    text = (ROOT / "Makefile").read_text()
    dispatch, names = {}, []
    for line in text.splitlines():
        rule = re.match(r"^([a-z_][a-z0-9_ -]*):(?!=)", line)
        if rule:
            names = rule.group(1).split()
        launch = re.match(r"^\t@\$\(LAUNCH\) (\S+)$", line)
        if launch:
            dispatch.update((name, launch.group(1)) for name in names)
    user_vars = re.search(r"^USER_VARS := ((?:.*\\\n)*.*)$", text, re.M).group(1)
    return dispatch, set(user_vars.replace("\\\n", " ").split())


def test_makefile_and_command_table_agree():
    from toolbox.cli.commands import COMMANDS, OPTIONS, target_help

    dispatch, user_vars = makefile_rules()
    assert set(dispatch.values()) == set(COMMANDS), "every command has a make target and back"
    assert all(target == command or target in ("up", "down", "ls", "fd", "rm", "mn", "sv")
               for target, command in dispatch.items())
    assert user_vars == set(OPTIONS), "Makefile USER_VARS must list exactly the options of cli/commands.py"
    helps = target_help()
    assert set(COMMANDS) <= set(helps), f"no `## ` help line for {set(COMMANDS) - set(helps)}"
