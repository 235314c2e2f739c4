"""toolbox.utils: class loading, open-file limit, nested subset, exclusive locks."""
import os
import resource
import subprocess
import sys
import time

import pytest

from toolbox.errors import ToolboxError
from toolbox.utils import exclusive_lock, increase_ulimit, is_nested_subset, load_class


def test_load_class_instance_and_class():
    counter = load_class({"class_path": "collections.Counter", "init_args": {"a": 2}})
    assert counter["a"] == 2
    assert load_class({"class_path": "fractions.Fraction"}, init=False).__name__ == "Fraction"


@pytest.mark.parametrize("spec, message", [
    ({"class_path": "no_such_module_x.Thing"}, "cannot import module 'no_such_module_x'"),
    ({"class_path": "collections.NoSuch"}, "module 'collections' has no attribute 'NoSuch'"),
    ({"init_args": {}}, "expected {'class_path': 'package.module.Class'}"),
])
def test_load_class_errors(spec, message):
    with pytest.raises(ToolboxError) as info:
        load_class(spec)
    assert message in info.value.format()


def test_increase_ulimit_never_exceeds_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = increase_ulimit(10 ** 9)
    assert new == (10 ** 9 if hard == resource.RLIM_INFINITY else hard)
    assert new >= soft
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == new
    assert increase_ulimit(1) == new  # never lowers


def test_is_nested_subset():
    whole = {"model": {"lr": 0.1, "layers": 2}, "seed": 1}
    assert is_nested_subset(whole, {"model": {"lr": 0.1}})
    assert not is_nested_subset(whole, {"model": {"lr": 0.2}})
    assert not is_nested_subset(whole, {"missing": 1})
    assert is_nested_subset(whole, {})


def test_exclusive_lock_is_exclusive_and_released_when_holder_dies(tmp_path):
    path = tmp_path / "x.lock"
    with exclusive_lock(str(path)):
        with pytest.raises(ToolboxError) as info:
            with exclusive_lock(str(path), busy="held by a monitor (pid {pid})"):
                pass
        assert f"held by a monitor (pid {os.getpid()})" in info.value.format()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"), str(path)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ToolboxError):
        with exclusive_lock(str(path)):
            pass
    holder.kill()
    holder.wait()
    time.sleep(0.05)
    with exclusive_lock(str(path)):
        assert path.read_text().strip().isdigit()
