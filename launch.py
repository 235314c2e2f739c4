#!/usr/bin/env python3
"""Command-line entry point of the toolbox: `python launch.py <command>`; the Makefile dispatches here.

The commands and their options are the table in toolbox/cli/commands.py; toolbox/cli/main.py runs one.
"""
import importlib.util
import os
import sys


def _register_toolbox_package():
    """Make `import toolbox.x` work whatever the checkout folder is called (src/toolbox, a clone...)."""
    if "toolbox" in sys.modules:
        return
    here = os.path.dirname(os.path.realpath(__file__))
    spec = importlib.util.spec_from_file_location(
        "toolbox", os.path.join(here, "__init__.py"), submodule_search_locations=[here])
    module = importlib.util.module_from_spec(spec)
    sys.modules["toolbox"] = module
    spec.loader.exec_module(module)


def main(argv=None):
    _register_toolbox_package()
    from toolbox.cli.main import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
