"""The environment a cell runs in: the chosen interpreter activated as its activate script would."""
import os

from toolbox.core.runenv import Interpreter, activate, run_environment


def _env_tree(root, *marker_dirs):
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").write_text("#!/bin/sh\n")
    (root / "bin" / "python").chmod(0o755)
    for name in marker_dirs:
        (root / name).mkdir()
    return root


def test_a_virtualenv_goes_first_on_path_with_virtual_env_set(tmp_path):
    venv = _env_tree(tmp_path / "venv")
    interp = Interpreter(str(venv / "bin" / "python"), str(venv), "/usr")
    env = activate({"PATH": "/usr/bin:/bin", "PYTHONHOME": "/x"}, interp)
    assert env["PATH"] == f"{venv}/bin:/usr/bin:/bin"
    assert env["VIRTUAL_ENV"] == str(venv)
    assert "PYTHONHOME" not in env


def test_a_conda_env_sets_conda_prefix_and_its_name(tmp_path):
    conda = _env_tree(tmp_path / "miniconda" / "envs" / "proj", "conda-meta")
    interp = Interpreter(str(conda / "bin" / "python"), str(conda), str(conda))
    env = activate({"PATH": "/usr/bin", "VIRTUAL_ENV": "/old/venv"}, interp)
    assert env["PATH"] == f"{conda}/bin:/usr/bin"
    assert (env["CONDA_PREFIX"], env["CONDA_DEFAULT_ENV"]) == (str(conda), "proj")
    assert "VIRTUAL_ENV" not in env
    base = _env_tree(tmp_path / "opt" / "conda", "conda-meta", "condabin")
    env = activate({"PATH": "/usr/bin"}, Interpreter(str(base / "bin" / "python"), str(base), str(base)))
    assert env["CONDA_DEFAULT_ENV"] == "base"


def test_a_plain_interpreter_gets_only_python_links_first_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plain = _env_tree(tmp_path / "usr")
    interp = Interpreter(str(plain / "bin" / "python"), str(plain), str(plain))
    env = activate({"PATH": "/usr/bin:/bin"}, interp)
    first, rest = env["PATH"].split(os.pathsep, 1)
    assert rest == "/usr/bin:/bin"
    assert sorted(os.listdir(first)) == ["python", "python3"]
    assert all(os.readlink(os.path.join(first, n)) == interp.executable for n in ("python", "python3"))
    # when `python` and `python3` on PATH already are that interpreter, PATH stays as it is
    (plain / "bin" / "python3").symlink_to("python")
    path = f"{plain}/bin:/usr/bin"
    assert activate({"PATH": path}, interp)["PATH"] == path


def test_src_goes_first_on_pythonpath_once(tmp_path):
    env = run_environment({"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere"}, root=str(tmp_path))
    assert env["PYTHONPATH"] == f"{tmp_path}/src:/elsewhere"
