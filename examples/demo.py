"""`make demo`: set up the quick-start example as the README says and run it end to end.

The project is created in build/demo/ of the toolbox checkout (or the folder given as the first
argument): a copy of examples/quickstart with src/toolbox pointing at this checkout and Makefile /
launch.py symlinked into its root. Then it runs `make local` (the seed's output: 2.0, 2.0, 5.0, 5.0),
`make plan` and `make dryrun` (manifests written to build/demo/build/, nothing submitted), all with this
interpreter (`python` in the cells' commands is this one, whatever PATH holds).
"""
import os
import shutil
import subprocess
import sys

TOOLBOX = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(TOOLBOX, "build", "demo")


def setup():
    shutil.rmtree(DEMO, ignore_errors=True)
    shutil.copytree(os.path.join(TOOLBOX, "examples", "quickstart"), DEMO)
    os.symlink(TOOLBOX, os.path.join(DEMO, "src", "toolbox"))
    os.symlink(os.path.join("src", "toolbox", "Makefile"), os.path.join(DEMO, "Makefile"))
    os.symlink(os.path.join("src", "toolbox", "launch.py"), os.path.join(DEMO, "launch.py"))
    shutil.copy(os.path.join(DEMO, ".env.example"), os.path.join(DEMO, ".env"))
    # the README asks users to fill in their namespace and user name; the demo uses stand-ins
    kube = os.path.join(DEMO, "config", "kube.yaml")
    with open(kube) as f:
        text = f.read().replace("<NAMESPACE>", "demo-namespace").replace("<USER>", "demo-user")
    with open(kube, "w") as f:
        f.write(text)


def make(*args):
    print(f"\n$ make {' '.join(args)}", flush=True)
    return subprocess.call(["make", *args, f"PYTHON={sys.executable}"], cwd=DEMO)


def main():
    setup()
    print(f"Quick-start project created in {os.path.relpath(DEMO)}/")
    for target in ("local", "plan", "dryrun"):
        code = make(target)
        if code:
            return code
    print(f"\nDone. Explore it: cd {os.path.relpath(DEMO)} && make help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
