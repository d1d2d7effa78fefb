"""The ``vlora`` command: plan, fit, validate, lock, export, import, adapter, plugins, models, schema, shares, coverage,
cache, scaffold. Each command's parser sits beside its handler, one module per group; this module puts them
together and runs one.

No traceback reaches a user for a bad input: every ``VloraError`` becomes one message and its exit code.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from .. import errors
from ..boundary import escape_lines
from ..cache import NO_CACHE_ENV
from ..errors import VloraError
from ..plugins import loaded_registry
from . import adapter, check, fit, info, plan, tools
from .common import EXIT_CODES, Version

# each command's handler (beside its parser, in the module of its group)
COMMANDS = {
    "plan": plan.run,
    "fit": fit.run,
    "validate": check.run_validate,
    "lock": check.run_lock,
    "plugins": info.run_plugins,
    "schema": info.run_schema,
    "shares": info.run_shares,
    "coverage": info.run_coverage,
    "scaffold": info.run_scaffold,
    "models": info.run_models,
    "adapter": adapter.run,
    "cache": info.run_cache,
    "export": tools.run_export,
    "import": tools.run_import,
    "docs": info.run_docs,
}
# the order `vlora --help` lists the commands in
ADDERS = (plan.add, fit.add, check.add_validate, check.add_lock, info.add_plugins, info.add_shares, info.add_scaffold,
          info.add_coverage, info.add_cache, info.add_schema, adapter.add, tools.add_export, tools.add_import,
          info.add_models, info.add_docs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlora",
        description="Exact, validated, explainable LoRA targets for vision-language models.",
        epilog=EXIT_CODES + "\nexample (`vlora models` lists the bundled model names):\n"
        "  vlora plan my_spec.yaml --model Qwen2.5-VL-7B-Instruct",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=Version, nargs=0,
                        help="print vlora's version and the installed plugins with theirs, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for add in ADDERS:
        add(sub)
    return parser


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like an interrupt: temporary files are removed on the way out


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)  # a killed command leaves no half-written file behind
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # `vlora` alone: what it does and its commands, as `vlora --help` says it
        parser.print_help()
        return errors.EXIT_USAGE
    args = parser.parse_args(argv)
    if getattr(args, "no_cache", False):
        os.environ[NO_CACHE_ENV] = "1"  # for this process (and what it starts): nothing is read or written
    try:
        return COMMANDS[args.command](args)
    except VloraError as exc:
        print(f"vlora {args.command}: error: {escape_lines(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vlora: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return errors.EXIT_OK
    except Exception as exc:  # a bug: say so plainly; the traceback only on request
        if os.environ.get("VLORA_DEBUG"):
            traceback.print_exc()
        print(
            f"vlora {args.command}: internal error: {type(exc).__name__}: {escape_lines(str(exc))}\n"
            "  this is a bug in vlora or a plugin; rerun with VLORA_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return errors.EXIT_INTERNAL
    finally:
        _note_slow_plugins(args.command)


def _note_slow_plugins(command: str) -> None:
    """Name the plugins that made this command slow to start (each command loads every plugin)."""
    registry = loaded_registry()
    for p in registry.slow_plugins() if registry is not None and command != "plugins" else []:
        print(f"vlora: note: plugin {p.distribution} took {p.load_seconds:.1f} s to load, and every vlora command "
              f"pays that; `vlora plugins` shows each plugin's load time, VLORA_DISABLE_PLUGINS={p.name} skips it",
              file=sys.stderr)


__all__ = ["main"]


if __name__ == "__main__":
    sys.exit(main())
