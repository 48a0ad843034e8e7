"""The `distill` console script: a registry of subcommands, each a module with
`HELP`, `add_arguments(parser)` and `main(args) -> int`. Modules are imported only when their
command runs, so `distill --help` stays fast. A `DistillError` (bad recipe, data, path) is
printed on one line and exits with status 2; nothing is written past that point. Argument errors
(argparse) are one line too: `distill sample: error: argument --steps: must be >= 1, got 0`.
`main(argv)` returns the exit status (also for argparse's exits), so it can be called in-process.
Messages go through `logging` (`distill.engine.messages`): INFO by default, `--quiet` WARNING, `--verbose` DEBUG."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

COMMANDS = {
    "run": "distill.commands.run",
    "sample": "distill.commands.sample",
    "eval": "distill.commands.evaluate",
    "lab": "distill.commands.lab",
    "doctor": "distill.commands.doctor",
    "bench": "distill.commands.bench",
    "translate": "distill.commands.translate",
    "classifier": "distill.commands.classifier",
    "demo": "distill.commands.demo",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) on stderr and exit status 2; subcommand
    parsers inherit it (add_subparsers uses the parent's class)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="distill", description="Adversarial distillation of diffusion models.")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", dest="log_quiet",  # not the commands' own --quiet
                      help="warnings and errors only (no progress lines or bars); the command's own output stays")
    talk.add_argument("-v", "--verbose", action="store_true", dest="log_verbose", help="also the debug lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv=None) -> int:
    from .errors import DistillError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or an argument error (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "_main", None):
        parser.print_help()
        return 1
    import logging

    from .engine.messages import set_verbosity

    set_verbosity(logging.WARNING if args.log_quiet else logging.DEBUG if args.log_verbose else logging.INFO)
    show = warnings.showwarning
    warnings.showwarning = lambda message, category, *a, **k: print(  # a warning is one line too
        f"distill {args.command}: warning: {' '.join(str(message).split())}", file=sys.stderr)
    try:
        return int(args._main(args) or 0)
    except DistillError as e:
        msg = " ".join(line.strip() for line in str(e).splitlines() if line.strip())  # one line, always
        print(f"distill {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distill {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
