"""`make debug`: python invocations parsed from shell commands, JSONC-safe editing of launch.json,
and the two modes end to end with real make (grid cells from config/launch.yaml, and target=X)."""
import json
import os
import re
import shlex
import string
import sys
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolbox.core.runenv import Interpreter
from toolbox.devtools import vscode
from toolbox.devtools.vscode import edit_configurations, parse_jsonc, python_invocation, strip_jsonc
from toolbox.errors import ToolboxError


# -- python invocations -------------------------------------------------------------------------------
def inv(kind, target, args=(), env=None, cwd=None):
    return {kind: target, "args": list(args), "env": env or {}, "cwd": cwd}


@pytest.mark.parametrize("command, expected", [
    pytest.param("python src/avg.py data/1.txt --lr 0.1",
                 inv("program", "src/avg.py", ["data/1.txt", "--lr", "0.1"]), id="script"),
    pytest.param("python -m pkg.train --epochs 3", inv("module", "pkg.train", ["--epochs", "3"]), id="module"),
    pytest.param("python -mpkg x", inv("module", "pkg", ["x"]), id="module-glued"),
    pytest.param("python3.11 -u -W ignore -X dev train.py", inv("program", "train.py"), id="options"),
    pytest.param("CUDA_VISIBLE_DEVICES=0 WANDB_MODE=offline python t.py",
                 inv("program", "t.py", env={"CUDA_VISIBLE_DEVICES": "0", "WANDB_MODE": "offline"}), id="env-prefix"),
    pytest.param("env A=1 python t.py", inv("program", "t.py", env={"A": "1"}), id="env-command"),
    pytest.param("cd src && python t.py", inv("program", "t.py", cwd="src"), id="cd"),
    pytest.param("cd src; cd sub && python t.py", inv("program", "t.py", cwd="src/sub"), id="cd-twice"),
    pytest.param("cd ~/x && python t.py", inv("program", "t.py"), id="cd-unknown"),
    pytest.param("python prep.py && python train.py --x 1", inv("program", "train.py", ["--x", "1"]), id="last-wins"),
    pytest.param("python train.py --name 'a b' \"c \\\"d\\\"\" e\\ f",
                 inv("program", "train.py", ["--name", "a b", 'c "d"', "e f"]), id="quotes"),
    pytest.param("python train.py \\\n  --lr 0.1 \\\n  --url http://x.org/a#b  # a comment\necho done",
                 inv("program", "train.py", ["--lr", "0.1", "--url", "http://x.org/a#b"]), id="continuation-comment"),
    pytest.param("python t.py 'a;b' | tee log.txt", inv("program", "t.py", ["a;b"]), id="pipe"),
    pytest.param("uv run python -m app", inv("module", "app"), id="uv-run"),
    pytest.param("poetry run python t.py", inv("program", "t.py"), id="poetry-run"),
    pytest.param("conda run -n env --no-capture-output python t.py", inv("program", "t.py"), id="conda-run"),
    pytest.param("/usr/bin/python3 t.py", inv("program", "t.py"), id="absolute-python"),
    pytest.param("echo hi && bash run.sh", None, id="no-python"),
    pytest.param("python -c 'print(1)'", None, id="inline-code"),
    pytest.param("python", None, id="repl"),
    pytest.param("pythonista t.py", None, id="not-python"),
])
def test_python_invocation(command, expected):
    assert python_invocation(command) == expected


@pytest.mark.parametrize("command, expected", [
    pytest.param("a; b && c || d | e & f\ng", [["a"], ["b"], ["c"], ["d"], ["e"], ["f"], ["g"]], id="separators"),
    pytest.param("python t.py # note; not a command\npython u.py", [["python", "t.py"], ["python", "u.py"]],
                 id="comment-to-end-of-line"),
    pytest.param("echo a#b x#", [["echo", "a#b", "x#"]], id="hash-inside-a-word"),
    pytest.param("p 'two\nlines' \"\" x", [["p", "two\nlines", "", "x"]], id="quoted-newline-and-empty-word"),
    pytest.param("p \\\n  --flag", [["p", "--flag"]], id="line-continuation"),
    pytest.param("ok\np 'unclosed", [["ok"]], id="unclosed-quote"),
])
def test_shell_words(command, expected):
    assert vscode.shell_words(command) == expected


_word = st.text(alphabet=string.printable + "é€\u00a0", max_size=8).filter(
    lambda w: not w.startswith("#") and not (w and set(w) <= set(vscode.SEPARATORS)) and "\\\n" not in w)


@settings(max_examples=200, deadline=None)
@given(st.lists(_word, max_size=5))
def test_shell_words_reads_back_what_shlex_quotes(args):
    """Any argument list quoted as a shell would need it comes back word for word (the exceptions are the
    ones shell_words documents: a word of separators only, a word starting with #, a backslash-newline)."""
    assert vscode.shell_words(shlex.join(["python", "t.py", *args])) == [["python", "t.py", *args]]


VENV = Interpreter("/x/venv/bin/python", "/x/venv", "/usr")


def test_debug_configuration_mirrors_a_local_run():
    config = vscode.debug_configuration("cell-1", inv("program", "t.py", ["--x"], {"A": "1"}, "src"),
                                            vscode.GRID_GROUP, VENV)
    assert config == {
        "name": "cell-1", "type": "debugpy", "request": "launch", "program": "${workspaceFolder}/src/t.py",
        "args": ["--x"], "cwd": "${workspaceFolder}/src", "python": "/x/venv/bin/python",
        "envFile": "${workspaceFolder}/.env",
        "env": {"PATH": "/x/venv/bin:${env:PATH}", "VIRTUAL_ENV": "/x/venv", "PYTHONPATH": "${workspaceFolder}/src",
                "TOOLBOX_CELL_NAME": "cell-1", "A": "1"},
        "console": "integratedTerminal", "justMyCode": False, "presentation": {"group": "toolbox grid"}}
    module = vscode.debug_configuration("t", inv("module", "pkg.main"), vscode.TARGET_GROUP, VENV)
    assert module["module"] == "pkg.main" and "program" not in module and module["cwd"] == "${workspaceFolder}"
    assert "TOOLBOX_CELL_NAME" not in module["env"]


def test_debug_configuration_uses_the_interpreter_make_chose(project):
    """By default the interpreter running the toolbox (make's PYTHON), portable when it is the project's .venv."""
    config = vscode.debug_configuration("t", inv("program", "t.py"), "g")
    assert config["python"] == sys.executable
    local = Interpreter(str(project.path / ".venv" / "bin" / "python"), str(project.path / ".venv"), "/usr")
    config = vscode.debug_configuration("t", inv("program", "t.py"), "g", local)
    assert config["python"] == "${workspaceFolder}/.venv/bin/python"
    assert config["env"]["PATH"] == "${workspaceFolder}/.venv/bin:${env:PATH}"
    assert config["env"]["VIRTUAL_ENV"] == "${workspaceFolder}/.venv"


def test_absolute_programs_inside_the_workspace_become_portable(project):
    inside = vscode.debug_configuration("t", inv("program", str(project.path / "src" / "x.py")), "g")
    assert inside["program"] == "${workspaceFolder}/src/x.py"
    outside = vscode.debug_configuration("t", inv("program", "/opt/tool/run.py"), "g")
    assert outside["program"] == "/opt/tool/run.py"


# -- JSONC --------------------------------------------------------------------------------------------
USER_FILE = """\
// VS Code launch file. See https://go.microsoft.com/fwlink/?linkid=830387
{
    /* version of the format */
    "version": "0.2.0",
    "configurations": [
        // my own debugging setup
        {
            "name": "Attach",  // trailing comment
            "type": "debugpy",
            "request": "attach",
            "connect": {"host": "http://localhost:5678/x//y", "note": "/* not a comment */ \\"q\\" ]},"},
        },
        {"name": "old-cell", "presentation": {"group": "toolbox grid"}}, // generated before
        {
            "name": "Current file",
            "program": "${file}", // the open file
        },
    ],
    "compounds": [], // none yet
}
"""


def test_strip_jsonc_keeps_strings_and_positions():
    plain, removed = strip_jsonc(USER_FILE)
    assert len(plain) == len(USER_FILE) and plain.count("\n") == USER_FILE.count("\n")
    data = json.loads(plain)
    assert data["configurations"][0]["connect"] == {"host": "http://localhost:5678/x//y",
                                                     "note": '/* not a comment */ "q" ]},'}
    assert data["configurations"][2]["program"] == "${file}"
    assert len(removed) == 4  # the four trailing commas


def test_edit_replaces_generated_configurations_and_keeps_everything_else():
    new = edit_configurations(USER_FILE, lambda c: vscode._group(c) == vscode.GRID_GROUP,
                              [{"name": "cell-a", "args": ["http://x//y"]}])
    data = parse_jsonc(new)
    assert [c["name"] for c in data["configurations"]] == ["Attach", "Current file", "cell-a"]
    assert data["configurations"][0] == parse_jsonc(USER_FILE)["configurations"][0]
    assert data["compounds"] == [] and data["version"] == "0.2.0"
    for comment in ("// VS Code launch file. See https://go.microsoft.com/fwlink/?linkid=830387",
                    "/* version of the format */", "// my own debugging setup", "// trailing comment",
                    "// the open file", "// none yet"):
        assert comment in new
    assert "old-cell" not in new


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("   \n", id="blank"),
    pytest.param("{}", id="empty-object"),
    pytest.param('{"version": "0.2.0"}', id="no-configurations"),
    pytest.param('{"version": "0.2.0",}', id="no-configurations-trailing-comma"),
    pytest.param('{"configurations": []}', id="empty-list"),
    pytest.param('{"configurations": [ /* c */ ], // x\n}', id="empty-list-comments"),
    pytest.param('{"configurations": [{"name": "a"} // c\n]}', id="line-comment-last"),
    pytest.param('{"configurations": [{"name": "x", "presentation": {"group": "toolbox grid"}}, // c\n'
                 '{"name": "a"}]}', id="removed-first"),
    pytest.param('{"configurations": [{"name": "a"}, // c\n{"name": "x", "presentation": {"group": "toolbox grid"}}'
                 ' // d\n]}', id="removed-last"),
    pytest.param('{"configurations": [{"name": "a"}, /* start\n end */ {"name": "x", "presentation": '
                 '{"group": "toolbox grid"}}]}', id="block-comment-across-lines"),
])
def test_edit_small_files(text):
    new = edit_configurations(text, lambda c: c.get("name") == "x", [{"name": "new"}])
    data = parse_jsonc(new)
    names = [c["name"] for c in data["configurations"]]
    before = [c["name"] for c in parse_jsonc(text).get("configurations", [])] if text.strip() else []
    assert names == [n for n in before if n != "x"] + ["new"]


def test_edit_rejects_files_it_cannot_read():
    with pytest.raises(ToolboxError, match=r"launch.json:3:\d+: cannot read it"):
        edit_configurations('{\n "configurations": [\n  {"name": }\n ]\n}', lambda c: False, [])
    with pytest.raises(ToolboxError, match="not a list"):
        edit_configurations('{"configurations": {}}', lambda c: False, [])


# Random launch files: user configurations with hostile strings, comments and trailing commas sprinkled
# wherever JSONC allows whitespace. Whatever the file, the edit keeps every user configuration exactly.
_text = st.text(alphabet=string.printable + "é€", max_size=12)
_user = st.fixed_dictionaries({"name": st.text(alphabet=string.ascii_letters, min_size=1, max_size=6)},
                              optional={"url": _text, "args": st.lists(_text, max_size=3), "n": st.integers()})
_comment = st.sampled_from(["// c //x /* y", "/* a // b */", "/* multi\n line */", "// http://u.rl"])


@st.composite
def _jsonc_file(draw):
    users = draw(st.lists(_user, max_size=4))
    ours = [{"name": f"cell{i}", "presentation": {"group": "toolbox grid"}} for i in range(draw(st.integers(0, 2)))]
    configs = draw(st.permutations(users + ours))
    text = json.dumps({"version": "0.2.0", "configurations": configs}, indent=draw(st.sampled_from([None, 2, 4])))
    out, in_string, last, i = [], False, "", 0
    while i < len(text):  # add comments and trailing commas outside strings
        char = text[i]
        if in_string:
            out.append(text[i:i + 2] if char == "\\" else char)
            i += 2 if char == "\\" else 1
            in_string = char != '"'
            continue
        if char in "]}" and last not in "[{," and draw(st.booleans()):
            out.append(",")
        if char in "]}" and draw(st.integers(0, 4)) == 0:
            comment = draw(_comment)
            out.append(" " + comment + ("\n" if comment.startswith("//") else " "))
        out.append(char)
        if char == '"':
            in_string = True
        elif char in "[{,:" and draw(st.integers(0, 4)) == 0:
            comment = draw(_comment)
            out.append(" " + comment + ("\n" if comment.startswith("//") else " "))
        if not char.isspace():
            last = char
        i += 1
    result = "".join(out)
    return result, [c for c in configs if "presentation" not in c]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_jsonc_file())
def test_edit_never_corrupts_and_keeps_user_configurations(case):
    text, users = case
    assert "configurations" in parse_jsonc(text)  # the generator makes valid JSONC
    new = edit_configurations(text, lambda c: vscode._group(c) == vscode.GRID_GROUP,
                              [{"name": "fresh", "args": ["//", "/*"]}])
    configs = parse_jsonc(new)["configurations"]
    assert configs == users + [{"name": "fresh", "args": ["//", "/*"]}]


# -- writing the file ---------------------------------------------------------------------------------
def cells(*specs):
    return [SimpleNamespace(name=name, local_command=command, command=command, model="m", dataset="d", hparams=())
            for name, command in specs]


def test_cells_make_vscode_folder_and_configurations(project):
    configs, skipped, conflicts, changed = vscode.update_for_cells(
        cells(("c1", "python src/a.py --x 1"), ("c2", "echo no python"), ("c3", "python -m pkg y")))
    assert changed and skipped == ["c2"] and conflicts == []
    data = json.loads(project.read(".vscode/launch.json"))
    assert [c["name"] for c in data["configurations"]] == ["c1", "c3"]
    assert not (project.path / ".vscode" / "launch.json.bak").exists()
    assert (project.path / ".vscode" / "launch.json").stat().st_mode & 0o644 == 0o644
    again = vscode.update_for_cells(cells(("c1", "python src/a.py --x 1"), ("c3", "python -m pkg y")))
    assert again[3] is False  # nothing changed, nothing rewritten


def test_cells_replace_their_old_configurations_and_respect_user_ones(project):
    project.write(".vscode/launch.json", USER_FILE.replace('"Current file"', '"c1"'))
    configs, skipped, conflicts, changed = vscode.update_for_cells(cells(("c1", "python a.py"),
                                                                            ("c2", "python b.py")))
    assert conflicts == ["c1"]
    data = parse_jsonc(project.read(".vscode/launch.json"))
    assert [c["name"] for c in data["configurations"]] == ["Attach", "c1", "c2"]
    assert data["configurations"][1]["program"] == "${file}"  # the user's c1 is kept
    assert project.read(".vscode/launch.json.bak") == USER_FILE.replace('"Current file"', '"c1"')
    vscode.update_for_cells(cells(("c1", "python a.py")), overwrite=True)
    data = parse_jsonc(project.read(".vscode/launch.json"))
    assert [c["name"] for c in data["configurations"]] == ["Attach", "c1"]
    assert data["configurations"][1]["program"] == "${workspaceFolder}/a.py"


def test_no_python_anywhere_is_an_error(project):
    with pytest.raises(ToolboxError, match="no cell of the grid runs python"):
        vscode.update_for_cells(cells(("c1", "bash x.sh")))
    assert not (project.path / ".vscode" / "launch.json").exists()


def test_a_byte_order_mark_is_accepted(project):
    project.write(".vscode/launch.json", '\ufeff{"version": "0.2.0", "configurations": [{"name": "mine"}]}')
    vscode.update_for_cells(cells(("c1", "python a.py")))
    names = [c["name"] for c in json.loads(project.read(".vscode/launch.json"))["configurations"]]
    assert names == ["mine", "c1"]


def test_broken_launch_json_is_left_alone(project, cli):
    project.launch_yaml("model:\n  m:\n    command: python a.py\n")
    project.write(".vscode/launch.json", '{"configurations": [ {"name": "x",, } ]}')
    result = cli("debug")
    assert result.code == 1
    assert "error: .vscode/launch.json:1:" in result.err and "cannot read it" in result.err
    assert project.read(".vscode/launch.json") == '{"configurations": [ {"name": "x",, } ]}'


def _make_folder(project):
    (project.path / ".vscode" / "launch.json").mkdir(parents=True)


def _make_file(project):
    project.write(".vscode", "not a folder")


def _write_latin1(project):
    (project.path / ".vscode").mkdir()
    (project.path / ".vscode" / "launch.json").write_bytes('{"configurations": [{"name": "café"}]}'.encode("latin-1"))


@pytest.mark.parametrize("setup, message, hint", [
    pytest.param(_make_folder, "error: .vscode/launch.json: is a folder, not a file", "hint: move it away",
                 id="launch-json-is-a-folder"),
    pytest.param(_make_file, "error: .vscode: is a file, not a folder", "hint: move it away", id="vscode-is-a-file"),
    pytest.param(_write_latin1, "error: .vscode/launch.json: cannot read it: not UTF-8 text", "it was not changed",
                 id="not-utf-8"),
])
def test_what_stands_in_place_of_launch_json_is_a_one_line_error(project, cli, setup, message, hint):
    project.launch_yaml("model:\n  m:\n    command: python a.py\n")
    setup(project)
    result = cli("debug")
    assert result.code == 1
    assert result.err.splitlines()[0] == message, result.err
    assert hint in result.err and "Traceback" not in result.err


# -- end to end with real make ------------------------------------------------------------------------
LAUNCH = """\
model:
  average:
    command: python src/avg.py <fn> --lr <lr>
    hparam: {lr: [0.1, 0.01]}
dataset:
  data1: {hparam: {_fn: data/1.txt}}
"""


def test_make_debug_writes_one_configuration_per_cell(project, make):
    from toolbox.core.grid import load_cells

    project.launch_yaml(LAUNCH)
    project.write(".vscode/launch.json", USER_FILE)
    result = make("debug")
    assert result.returncode == 0, result.stderr
    assert ".vscode/launch.json: 2 configurations of the grid" in result.stdout
    expected = load_cells(project_dir=str(project.path))
    data = parse_jsonc(project.read(".vscode/launch.json"))
    ours = [c for c in data["configurations"] if vscode._group(c) == vscode.GRID_GROUP]
    assert [c["name"] for c in ours] == [cell.name for cell in expected]
    assert [c["args"] for c in ours] == [["data/1.txt", "--lr", "0.1"], ["data/1.txt", "--lr", "0.01"]]
    assert all(c["program"] == "${workspaceFolder}/src/avg.py" for c in ours)
    assert all(c["python"] == sys.executable for c in ours)  # make's PYTHON
    assert [c["name"] for c in data["configurations"] if c not in ours] == ["Attach", "Current file"]
    assert "https://go.microsoft.com/fwlink/?linkid=830387" in project.read(".vscode/launch.json")
    # the grid shrinks: the stale cell goes, the user's configurations stay
    project.launch_yaml(LAUNCH.replace("[0.1, 0.01]", "[0.5]"))
    assert make("debug").returncode == 0
    data = parse_jsonc(project.read(".vscode/launch.json"))
    assert [c["args"][-1] for c in data["configurations"] if vscode._group(c)] == ["0.5"]
    assert len(data["configurations"]) == 3


def test_make_debug_target_adds_one_configuration_from_make_n(project, make):
    project.write("project.mk", """\
        ## train with the make line's epochs
        train:
        \t@cd src && WANDB_MODE=offline python -m pkg.train --epochs $(epochs) --name "a b"
        notpython:
        \t@echo hi
    """)
    result = make("debug", "target=train", "epochs=3")
    assert result.returncode == 0, result.stderr
    data = parse_jsonc(project.read(".vscode/launch.json"))
    (config,) = data["configurations"]
    assert config["name"] == "train" and config["module"] == "pkg.train"
    assert config["args"] == ["--epochs", "3", "--name", "a b"]
    assert config["cwd"] == "${workspaceFolder}/src" and config["env"]["WANDB_MODE"] == "offline"
    assert config["presentation"] == {"group": vscode.TARGET_GROUP}
    again = make("debug", "target=train", "epochs=5")
    assert again.returncode != 0 and "a configuration named 'train' already exists" in again.stderr
    assert "overwrite=true" in again.stderr
    replaced = make("debug", "target=train", "epochs=5", "overwrite=true")
    assert replaced.returncode == 0
    (config,) = parse_jsonc(project.read(".vscode/launch.json"))["configurations"]
    assert config["args"][1] == "5"
    # the grid mode keeps target configurations
    project.launch_yaml(LAUNCH)
    assert make("debug").returncode == 0
    names = [c["name"] for c in parse_jsonc(project.read(".vscode/launch.json"))["configurations"]]
    assert names[0] == "train" and len(names) == 3
    bad = make("debug", "target=trian")
    assert bad.returncode != 0 and "error: target=trian: not a make target" in bad.stderr
    assert "did you mean 'train'" in bad.stderr
    nopy = make("debug", "target=notpython")
    assert nopy.returncode != 0 and "runs no python script or module" in nopy.stderr


def test_make_debug_of_a_toolbox_target_points_at_launch_py(project, make):
    result = make("debug", "target=local")
    assert result.returncode == 0, result.stderr
    (config,) = parse_jsonc(project.read(".vscode/launch.json"))["configurations"]
    assert os.path.basename(config["program"]) == "launch.py" and config["args"] == ["local"]
    assert re.search(r"configuration 'local' \(.*launch\.py local\)", result.stdout)
