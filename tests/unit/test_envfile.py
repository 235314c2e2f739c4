""".env: what is not a file or not NAME=value lines is a clear error that never shows the file's text."""
import os

import pytest

PEM_LINES = ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
             "QyNTUxOQAAACDxSeCretPaRt+abc/def==", "QyNTUx OQAAACD xabc"]
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(PEM_LINES) + "\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture
def launch_yaml(project):
    project.launch_yaml("model:\n  m: {command: touch ran}\n")


def test_an_unquoted_private_key_is_an_error_that_never_shows_it(project, cli, launch_yaml):
    project.env("A=1\nDEPLOY_KEY=" + PEM + "B=2\n")
    for command in ("local", "plan", "local-dryrun", "dryrun", "job"):
        result = cli(command)
        assert result.code == 2
        assert result.err.startswith("error: .env:2: DEPLOY_KEY: a multi-line value (a private key?) without quotes")
        assert 'quote multi-line values: KEY="' in result.err
        assert not any(line in result.out + result.err for line in PEM_LINES + ["-----END"])
    assert not (project.path / "ran").exists()


def test_the_same_key_quoted_arrives_exactly(project, cli):
    project.env('A=1\nQUOTED_KEY="' + PEM + '"\nB=2\n')
    project.launch_yaml("model:\n  m: {command: printenv QUOTED_KEY > key.txt}\n")
    assert cli("local").code == 0
    assert (project.path / "key.txt").read_text() == PEM + "\n"


def test_lines_of_other_multi_line_values_are_pointed_at_by_number_only(project, cli, launch_yaml):
    project.env("GOOD=1\nCREDS={\nhidden+part/of=json\nToKeNPaRt==\n")
    result = cli("plan")
    assert result.code == 2
    assert "error: .env:3: not a NAME=value line (its text is not shown: it may be part of a secret)\n" \
           "    if it continues the value of CREDS (line 2), quote that value" in result.err
    assert "error: .env:4: not a NAME=value line" in result.err
    assert "hidden" not in result.err and "ToKeN" not in result.err


def test_a_nul_in_a_value_is_a_clear_error(project, cli, launch_yaml):
    project.env('A="x\x00y"\n')
    result = cli("local")
    assert result.code == 2
    assert result.err.startswith("error: .env:1: A: contains a NUL character")


def _fifo(path):
    os.mkfifo(path)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "error: .env: is a directory, not a file"),
    (_fifo, "error: .env: is a FIFO (named pipe), not a file"),
    (lambda p: p.symlink_to("../elsewhere/.env"), "error: .env: is a symbolic link to ../elsewhere/.env, which "
                                                  "does not exist"),
])
def test_env_that_is_not_a_file_is_an_error_not_silence(project, cli, launch_yaml, make, message):
    make(project.path / ".env")
    result = cli("local")
    assert result.code == 2
    assert result.err.startswith(message)
    assert not (project.path / "ran").exists()


def test_odd_but_harmless_lines_are_kept_or_skipped_as_before(project, cli):
    project.env("export A=1\nBARE_NAME\nWITH.DOT=2\nEMPTY=\n")
    project.launch_yaml("model:\n  m: {command: 'echo A=$A EMPTY=[$EMPTY]'}\n")
    result = cli("local")
    assert result.code == 0, result.err
    assert "A=1 EMPTY=[]" in result.out
