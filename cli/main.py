"""`python launch.py <command>`: parse the options, call one handler, turn errors into messages and exit
codes: 0 ok, 1 something failed, 2 usage/config error (nothing started), 130 interrupted.
TOOLBOX_FULL_ERROR=1 shows tracebacks."""
import importlib
import os
import sys

from toolbox.cli.commands import COMMANDS, build_parser, parse_options
from toolbox.core.envfile import load_into_environ, read_env, redact, secret_values
from toolbox.errors import EXIT_INTERRUPTED, ToolboxError, full_tracebacks


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    secrets = []
    try:
        dotenv = read_env()
        secrets = secret_values(dotenv)
        load_into_environ(dotenv)
        args = parse_options(argv)
        if not args.command:
            build_parser().print_help()
            return 2
        module_name, func_name = COMMANDS[args.command][0].split(":")
        handler = getattr(importlib.import_module(f"toolbox.cli.{module_name}"), func_name)
        return int(handler(args) or 0)
    except ToolboxError as err:
        if full_tracebacks():
            raise
        sys.stdout.flush()
        print(redact(err.format(), secrets), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `make local-dryrun | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
