"""Command-line options with YAML config files whose keys mirror the options (the CLI wins over the file)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from fedad.common.errors import FedadError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults beside every option and keeps hand-written line breaks in descriptions."""


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:  # argparse hook
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def version() -> str:
    """The installed fedad version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("fedad")
    except PackageNotFoundError:
        return "unknown"


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` (a YAML mapping whose keys are this command's long options) and ``--version``."""
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="print the version and exit"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="YAML file whose keys mirror the long options (dashes or underscores); options given on "
        "the command line win over the file",
    )


def load_config(path: str | os.PathLike, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read a YAML config and map its keys to the parser's option destinations, rejecting unknown keys."""
    p = Path(path)
    if p.is_dir():
        raise FedadError(f"config file {p} is a directory")
    if not p.is_file():
        raise FedadError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise FedadError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FedadError(f"cannot read config file {p}: {exc}") from None
    if not isinstance(data, dict):
        raise FedadError(f"config file {p} must hold a mapping of option: value")
    dests = {a.dest for a in parser._actions if a.dest not in ("help", "config", "version")}
    out: dict[str, Any] = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in dests:
            raise FedadError(f"config file {p}: unknown key '{key}' (known: {', '.join(sorted(dests))})")
        out[dest] = value
    return out


def config_tokens(values: dict[str, Any], parser: argparse.ArgumentParser, source: str) -> list[str]:
    """The command-line words that give the config's values, so they pass the options' own types, choices and
    required checks (a value set as a default would skip them)."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    words: list[str] = []
    for dest, value in values.items():
        action = actions[dest]
        option = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if value is None:
            continue
        if flag:
            if not isinstance(value, bool):
                raise FedadError(f"config file {source}: '{dest}' is a switch; give true or false, got {value!r}")
            if value == isinstance(action, argparse._StoreTrueAction):
                words.append(option)
            continue
        if isinstance(value, (bool, dict)):
            raise FedadError(f"config file {source}: '{dest}' takes a value like {option} does, got {value!r}")
        if isinstance(value, list):
            if isinstance(action, argparse._AppendAction):
                words += [f"{option}={item}" for item in value]
            elif action.nargs not in (None, "?"):
                words += [option, *(str(item) for item in value)]
            else:  # one value: a list is written as the comma-separated text the option takes (--members)
                words.append(f"{option}={','.join(str(item) for item in value)}")
        else:
            words.append(f"{option}={value}")
    return words


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse argv, filling options not given on the command line from ``--config`` when present: the file's
    values are read as if given first on the command line, so each is checked like the option itself and the
    command line's own value wins."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(w in ("-h", "--help", "--version") for w in argv):
        return parser.parse_args(argv)  # help and version come first, whatever the config holds
    pre = ArgumentParser(add_help=False, prog=parser.prog)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return parser.parse_args(argv)
    values = load_config(known.config, parser)
    given = {dest for w in argv if (dest := _option_dest(parser, w)) is not None}
    values = {k: v for k, v in values.items() if k not in given}  # a repeatable option: the command line's only
    return parser.parse_args(config_tokens(values, parser, known.config) + argv)


def _option_dest(parser: argparse.ArgumentParser, word: str) -> str | None:
    """The destination of the long option a command-line word names, abbreviations included (None: no option)."""
    if not word.startswith("--"):
        return None
    name = word.split("=", 1)[0]
    actions = [a for a in parser._actions if a.option_strings]
    exact = [a for a in actions if name in a.option_strings]
    prefixed = exact or [a for a in actions if any(o.startswith(name) for o in a.option_strings if o.startswith("--"))]
    return prefixed[0].dest if len(prefixed) == 1 else None


def _freeze_at_exit() -> None:
    """At interpreter exit, keep the cyclic garbage collector off every object alive then (``gc.freeze``).

    Its final passes over torch's, Flower's and pandas' objects took 0.7-0.9 s of each process's exit (0.14 s
    after), about 4 s at the end of a 10-node run on 2 cores. Registered once; atexit handlers run last-in
    first-out, so the ones registered earlier (logging's flush) still run after it. Objects in reference
    cycles are then not finalised at exit: fedad closes its files and sinks itself before it returns.
    """
    global _FREEZE_REGISTERED
    if not _FREEZE_REGISTERED:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _FREEZE_REGISTERED = True


_FREEZE_REGISTERED = False


def run_cli(fn: Callable[[], int | None], prog: str | None = None) -> int:
    """Run a command body: FedadError, Ctrl-C and SIGTERM become one line on stderr, starting with ``prog`` (the
    command's name; default: the script's), and a non-zero exit code (SIGTERM unwinds like Ctrl-C,
    ``fedad.common.signals``: 143, as a process ended by it)."""
    import signal

    from fedad.common.signals import EXIT_CODE, Terminated, stop_on_sigterm

    prog = prog or Path(sys.argv[0]).name
    _freeze_at_exit()
    previous = signal.getsignal(signal.SIGTERM)
    installed = stop_on_sigterm()
    try:
        return int(fn() or 0)
    except FedadError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(f"{prog}: stopped by SIGTERM", file=sys.stderr)
        return EXIT_CODE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        if installed:  # a command run in-process (tests) leaves the caller's handler as it was
            signal.signal(signal.SIGTERM, previous)
