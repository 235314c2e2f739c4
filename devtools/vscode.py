"""`make debug`: VS Code debug configurations in .vscode/launch.json.

Without target=: one configuration per grid cell (from the cells' local commands). With target=X: one
configuration for the python command that `make -n X` prints. The file is edited as text, JSONC-aware
(comments and trailing commas, which VS Code allows): the user's other configurations and comments stay,
strings (URLs with //) are never touched, a backup goes to launch.json.bak before a rewrite, and the result
is parsed again before it replaces the file.

Generated configurations carry `"presentation": {"group": ...}`: "toolbox grid" for cells (all replaced on
every `make debug`, so cells that left the grid disappear) and "toolbox make" for targets.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

from toolbox.core.files import write_atomically
from toolbox.core.runenv import Interpreter, activate
from toolbox.devtools.shell import MAKE_INTERNALS, make_command_line_variables, make_targets
from toolbox.errors import CommandError, ToolboxError, UsageError, choices_line, did_you_mean

LAUNCH_JSON = os.path.join(".vscode", "launch.json")
GRID_GROUP = "toolbox grid"
TARGET_GROUP = "toolbox make"
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
WRAPPERS = {"env", "exec", "time", "nohup", "command", "nice", "builtin"}
RUNNERS = {"uv", "poetry", "pipenv", "pdm", "conda", "mamba", "micromamba", "hatch", "rye"}
SEPARATORS = ";&|\n"
# python options that take a value (python -W error -X dev script.py)
PYTHON_OPTIONS_WITH_VALUE = {"-W", "-X", "--check-hash-based-pycs"}


# -- shell commands -----------------------------------------------------------------------------------
def shell_words(command):
    """Split a (bash) command into simple commands, each a list of words with quotes removed.

    shlex reads the words (quotes, backslashes) and the separators newline, ;, &, &&, ||, |. Two bash rules
    are added: a backslash-newline continues the line, and # starts a comment only at the start of a word
    (shlex would also end `http://x.org/a#b` at its #). What shlex cannot tell: a quoted word that is only
    separators (`';'`) or starts with # (`'#x'`) is read as a separator or a comment; a backslash-newline
    inside single quotes is removed too; a command with an unclosed quote is dropped, with what follows.
    Not a full shell: $(...) and the like stay inside words.
    """
    lexer = shlex.shlex(command.replace("\\\n", ""), posix=True, punctuation_chars=SEPARATORS)
    lexer.whitespace = " \t\r"  # newlines are separators
    lexer.whitespace_split = True
    lexer.commenters = ""  # comments are recognised by their word, below
    commands, words, in_comment = [], [], False
    try:
        for token in lexer:
            if token and set(token) <= set(SEPARATORS):
                in_comment = in_comment and "\n" not in token
                if words:
                    commands.append(words)
                words = []
            elif in_comment or token.startswith("#"):
                in_comment = True
            else:
                words.append(token)
    except ValueError:  # an unclosed quote: bash would refuse the whole line
        words = []
    if words:
        commands.append(words)
    return commands


def python_invocation(command):
    """The python run in a shell command, as a dict of program or module, args, env and cwd; None if the
    command runs no python. With several (`python prep.py && python train.py`) the last one is taken:
    setup steps come first. Env-var prefixes, `env`, `uv run`/`poetry run`/`conda run -n x` and
    `cd DIR` before it are understood."""
    found, cwd = None, None
    for words in shell_words(command):
        if words[0] == "cd":
            target = words[1] if len(words) == 2 else None
            if target is None or target.startswith(("~", "$", "-")):
                cwd = None  # somewhere we cannot know: debug from the workspace folder
            else:
                cwd = target if os.path.isabs(target) or cwd is None else os.path.normpath(os.path.join(cwd, target))
            continue
        env, rest = {}, list(words)
        while rest:
            head = rest[0]
            if ENV_ASSIGNMENT.match(head):
                key, value = head.split("=", 1)
                env[key] = value
                rest.pop(0)
            elif head in WRAPPERS:
                rest.pop(0)
                while rest and rest[0].startswith("-") and not PYTHON.match(rest[0]):
                    rest.pop(0)
            elif head in RUNNERS and len(rest) > 1 and rest[1] == "run":
                rest = rest[2:]
                while rest and rest[0].startswith("-"):
                    option = rest.pop(0)
                    if option in ("-n", "--name", "-p", "--prefix", "--python", "--with", "--group") and rest:
                        rest.pop(0)
            else:
                break
        if not rest or not PYTHON.match(os.path.basename(rest[0])):
            continue
        args = rest[1:]
        while args and args[0].startswith("-") and args[0] != "-" and not args[0].startswith(("-m", "-c")):
            option = args.pop(0)
            if option in PYTHON_OPTIONS_WITH_VALUE and args:
                args.pop(0)
        if not args or args[0] == "-" or args[0].startswith("-c"):
            continue  # an interactive python or inline code: nothing to point a debugger at
        if args[0] == "-m":
            if len(args) < 2:
                continue
            found = {"module": args[1], "args": args[2:], "env": env, "cwd": cwd}
        elif args[0].startswith("-m") and len(args[0]) > 2:  # python -mpkg
            found = {"module": args[0][2:], "args": args[1:], "env": env, "cwd": cwd}
        else:
            found = {"program": args[0], "args": args[1:], "env": env, "cwd": cwd}
    return found


def debug_configuration(name, invocation, group, interpreter=None):
    """A VS Code debugpy configuration that runs like the local command: the interpreter make chose (default:
    this one), activated as `make local` activates it, src on PYTHONPATH, .env loaded."""
    interpreter = interpreter or Interpreter()
    folder = "${workspaceFolder}"
    cwd = folder if not invocation["cwd"] else (
        invocation["cwd"] if os.path.isabs(invocation["cwd"]) else f"{folder}/{invocation['cwd']}")
    config = {"name": name, "type": "debugpy", "request": "launch"}
    if "module" in invocation:
        config["module"] = invocation["module"]
    else:
        program = invocation["program"]
        root = os.path.realpath(os.getcwd())
        if not os.path.isabs(program):
            config["program"] = f"{cwd}/{program}"
        elif os.path.realpath(program).startswith(root + os.sep):  # inside the workspace: keep it portable
            config["program"] = f"{folder}/{os.path.relpath(os.path.realpath(program), root)}"
        else:
            config["program"] = program
    config["args"] = invocation["args"]
    config["cwd"] = cwd
    config["python"] = _in_workspace(interpreter.executable)
    config["envFile"] = f"{folder}/.env"
    activation = {key: _in_workspace(value) for key, value in activate({"PATH": "${env:PATH}"}, interpreter).items()}
    config["env"] = {**activation, "PYTHONPATH": f"{folder}/src",
                     **({"TOOLBOX_CELL_NAME": name} if group == GRID_GROUP else {}), **invocation["env"]}
    config["console"] = "integratedTerminal"
    config["justMyCode"] = False
    config["presentation"] = {"group": group}
    return config


def _in_workspace(path):
    """A path under the project root as ${workspaceFolder}/..., so the file stays right if the folder moves
    (links are kept: a venv's python is a link to the base interpreter)."""
    root = os.path.abspath(os.getcwd())
    return "${workspaceFolder}/" + path[len(root) + 1:] if path.startswith(root + os.sep) else path


# -- JSONC --------------------------------------------------------------------------------------------
def strip_jsonc(text):
    """JSON with comments and trailing commas -> plain JSON of the same length: comments become spaces
    (newlines kept, so error positions stay right) and trailing commas become spaces. Strings are left
    exactly as they are, so "https://x" survives. Returns (json_text, positions of removed commas)."""
    out, removed = list(text), []
    i, n = 0, len(text)
    last_comma = None
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            last_comma = None
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
        elif c == ",":
            last_comma = i
            i += 1
        elif c in "]}":
            if last_comma is not None:
                out[last_comma] = " "
                removed.append(last_comma)
            last_comma = None
            i += 1
        elif c in " \t\r\n":
            i += 1
        else:
            last_comma = None
            i += 1
    return "".join(out), removed


def parse_jsonc(text, where=LAUNCH_JSON):
    plain, _ = strip_jsonc(text)
    try:
        return json.loads(plain)
    except json.JSONDecodeError as err:
        raise ToolboxError(f"{where}:{err.lineno}:{err.colno}", f"cannot read it: {err.msg}",
                           hint="fix the file (or move it away); it was not changed") from None


def _skip_space(s, i):
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i


def _value_end(s, i):
    """End (exclusive) of the JSON value starting at s[i], in comment-free text."""
    if s[i] == '"':
        i += 1
        while s[i] != '"':
            i += 2 if s[i] == "\\" else 1
        return i + 1
    if s[i] in "[{":
        depth = 0
        while True:
            c = s[i]
            if c == '"':
                i = _value_end(s, i)
                continue
            if c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    match = re.compile(r"[^\s,\]\}]+").match(s, i)
    return match.end()


def _members(s, start):
    """(key, value start, value end) of the object whose '{' is at s[start]."""
    i = _skip_space(s, start + 1)
    members = []
    while s[i] != "}":
        key_end = _value_end(s, i)
        key = json.loads(s[i:key_end])
        i = _skip_space(s, key_end) + 1  # past ':'
        i = _skip_space(s, i)
        end = _value_end(s, i)
        members.append((key, i, end))
        i = _skip_space(s, end)
        if s[i] == ",":
            i = _skip_space(s, i + 1)
    return members


def _elements(s, start):
    """(start, end, index after its comma or None) of each element of the array whose '[' is at s[start]."""
    i = _skip_space(s, start + 1)
    elements = []
    while s[i] != "]":
        end = _value_end(s, i)
        j = _skip_space(s, end)
        after = None
        if s[j] == ",":
            after = j + 1
            j = _skip_space(s, j + 1)
        elements.append((i, end, after))
        i = j
    return elements, i


def _indent_of(text, pos):
    line_start = text.rfind("\n", 0, pos) + 1
    return re.match(r"[ \t]*", text[line_start:]).group()


def _render(config, indent):
    return json.dumps(config, indent=4, ensure_ascii=False).replace("\n", "\n" + indent)


def edit_configurations(text, remove, add):
    """New launch.json text: the configurations for which remove(config) is true are dropped, `add` is
    appended; everything else (other configurations, comments, formatting) is kept as written."""
    if not text.strip():
        return json.dumps({"version": "0.2.0", "configurations": add}, indent=4, ensure_ascii=False) + "\n"
    data = parse_jsonc(text)
    if not isinstance(data, dict):
        raise ToolboxError(LAUNCH_JSON, "the top level is not an object", hint="fix or move the file away")
    plain, removed_commas = strip_jsonc(text)
    top = _skip_space(plain, 0)
    members = _members(plain, top)
    found = [m for m in members if m[0] == "configurations"]
    if not found:
        indent = _indent_of(text, members[0][1]) if members else "    "
        body = ",\n".join(indent + "    " + _render(c, indent + "    ") for c in add)
        block = f'"configurations": [\n{body}\n{indent}]'
        if members:
            insert_at = members[-1][2]
            return text[:insert_at] + ",\n" + indent + block + text[insert_at:]
        close = _value_end(plain, top) - 1
        return text[:top + 1] + "\n" + indent + block + "\n" + text[close:]
    _, array_start, array_end = found[-1]
    if plain[array_start] != "[":
        raise ToolboxError(LAUNCH_JSON, '"configurations" is not a list', hint="fix or move the file away")
    elements, close = _elements(plain, array_start)
    # Each kept element is [lead, value, carried]: lead = the text between the previous comma and the
    # value (its comments), carried = same-line comments that followed it and that belonged to the lead
    # of an element removed after it. Commas go right after values, never after a comment.
    kept, carried_before_first, boundary = [], "", array_start + 1
    for start, end, after in elements:
        lead = text[boundary:start]
        value = json.loads(plain[start:end])
        if isinstance(value, dict) and remove(value):
            head = lead.split("\n", 1)[0] if "\n" in lead else ""
            if head.strip().startswith("//"):  # a whole line comment (a /* */ might go on below)
                if kept:
                    kept[-1][2] += head + "\n"
                else:
                    carried_before_first += head + "\n"
        else:
            kept.append([lead, text[start:end], ""])
        boundary = after if after is not None else end
    trailing = [p for p in removed_commas if boundary <= p < close]
    tail = text[(trailing[0] + 1) if trailing else boundary:close]
    indent = _indent_of(text, elements[0][0]) if elements else _indent_of(text, array_start) + "    "
    kept += [["\n" + indent, _render(c, indent), ""] for c in add]
    if kept and not tail.strip() and "\n" not in tail and "\n" in kept[0][0]:
        tail = "\n" + _indent_of(text, array_start)
    body = carried_before_first + "".join(
        lead + value + ("," if i < len(kept) - 1 else "") + carried for i, (lead, value, carried) in enumerate(kept))
    return text[:array_start + 1] + body + tail + text[close:]


def read_launch_json(path=LAUNCH_JSON):
    """The text of launch.json ('' when there is none). Anything else in its place is a one-line error."""
    if os.path.isdir(path):
        raise ToolboxError(path, "is a folder, not a file",
                           hint="move it away: VS Code reads debug configurations from the file .vscode/launch.json")
    if not os.path.exists(path):  # a dangling link counts as no file: the new file replaces the link
        return ""
    try:
        with open(path, encoding="utf-8-sig") as fh:  # -sig: a byte order mark is dropped
            return fh.read()
    except UnicodeDecodeError:
        raise ToolboxError(path, "cannot read it: not UTF-8 text", hint="fix the file (or move it away); "
                           "it was not changed") from None
    except OSError as err:
        raise ToolboxError(path, f"cannot read it: {err.strerror}") from None


def write_launch_json(remove, add, path=LAUNCH_JSON):
    """Edit (or create) launch.json; back up the old file; check the result before replacing it."""
    folder = os.path.dirname(path) or "."
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ToolboxError(folder, "is a file, not a folder",
                           hint="move it away: VS Code reads its debug configurations from the folder .vscode")
    old = read_launch_json(path)
    new = edit_configurations(old, remove, add)
    check = parse_jsonc(new, where=f"{path} (edited)")
    names = [c.get("name") for c in check.get("configurations", []) if isinstance(c, dict)]
    missing = [c["name"] for c in add if c["name"] not in names]
    if missing:  # a bug, never the user's fault: keep the file as it was
        raise ToolboxError(path, "editing it went wrong; the file was left unchanged",
                           [f"missing after the edit: {', '.join(missing)}"])
    if new == old:
        return False
    try:
        _replace_file(path, new, backup=bool(old))
    except OSError as err:
        raise ToolboxError(err.filename or path, f"cannot write it: {err.strerror}") from None
    return True


def _replace_file(path, text, backup):
    """Write text to path at once (a temporary file renamed over it), keeping its mode; the old file goes to
    path.bak first when backup is set."""
    mode = None
    if backup:
        shutil.copyfile(path, path + ".bak")
        mode = os.stat(path).st_mode & 0o777
    write_atomically(path, text, mode)


def existing_configurations(path=LAUNCH_JSON):
    text = read_launch_json(path)
    if not text.strip():
        return []
    data = parse_jsonc(text)
    configs = data.get("configurations", []) if isinstance(data, dict) else []
    return [c for c in configs if isinstance(c, dict)]


def _group(config):
    presentation = config.get("presentation")
    return presentation.get("group") if isinstance(presentation, dict) else None


# -- the two modes ------------------------------------------------------------------------------------
def grid_configurations(cells):
    """(configurations, names of cells that run no python)."""
    configs, skipped = [], []
    for cell in cells:
        invocation = python_invocation(cell.local_command)
        if invocation is None:
            skipped.append(cell.name)
        else:
            configs.append(debug_configuration(cell.name, invocation, GRID_GROUP))
    return configs, skipped


def update_for_cells(cells, overwrite=False, path=LAUNCH_JSON):
    """Replace every grid configuration by the current cells'. Returns (configs, skipped, conflicts, changed)."""
    configs, skipped = grid_configurations(cells)
    if not configs:
        raise ToolboxError("make debug", "no cell of the grid runs python; nothing to debug",
                           [f"cells: {', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''}"])
    existing = existing_configurations(path)
    ours = {c["name"] for c in configs}
    conflicts = sorted({c.get("name") for c in existing
                        if c.get("name") in ours and _group(c) != GRID_GROUP})
    if conflicts and not overwrite:
        configs = [c for c in configs if c["name"] not in conflicts]
    replace = set(conflicts) if overwrite else set()

    def remove(config):
        return _group(config) == GRID_GROUP or config.get("name") in replace

    changed = write_launch_json(remove, configs, path)
    return configs, skipped, ([] if overwrite else conflicts), changed


def target_command(target, environ=None):
    """The recipe text `make -n target` prints (what make would run), with the variables of this make
    command line (e.g. `make debug target=train epochs=3`) passed on, and the interpreter make chose for
    this command, activated."""
    environ = activate(dict(os.environ if environ is None else environ))
    variables = [v for v in make_command_line_variables(environ)
                 if not v.startswith(("target=", "overwrite=", "PYTHON="))]
    for key in MAKE_INTERNALS:
        environ.pop(key, None)
    proc = subprocess.run(["make", "--no-print-directory", "-n", target, *variables, f"PYTHON={sys.executable}"],
                          capture_output=True, text=True, env=environ)
    if proc.returncode != 0:
        raise CommandError(f"make -n {target}", f"failed (exit {proc.returncode})",
                           proc.stderr.strip().splitlines()[-5:])
    return proc.stdout


def update_for_target(target, overwrite=False, path=LAUNCH_JSON):
    targets = make_targets()
    if target not in targets:
        hint = did_you_mean(target, sorted(targets), n=3)
        raise UsageError(f"target={target}", "not a make target of this project",
                         [d for d in (hint, choices_line(targets, limit=40)) if d])
    recipe = target_command(target)
    invocation = python_invocation(recipe)
    if invocation is None:
        raise ToolboxError(f"target={target}", "its recipe runs no python script or module",
                           [line for line in recipe.strip().splitlines()[:5]])
    config = debug_configuration(target, invocation, TARGET_GROUP)
    existing = [c for c in existing_configurations(path) if c.get("name") == target]
    if existing and not overwrite:
        raise ToolboxError(f"{path}", f"a configuration named '{target}' already exists",
                           hint=f"`make debug target={target} overwrite=true` replaces it")
    changed = write_launch_json(lambda c: c.get("name") == target, [config], path)
    return config, changed


