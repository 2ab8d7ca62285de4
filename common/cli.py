"""The ``fedad`` umbrella command: data synth, data emit, train, score, evaluate, demo, keygen, certs, enroll."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from fedad.common.config import ArgumentParser, HelpFormatter, add_config_option, parse_args, run_cli

# name -> (module with add_arguments(parser) and run(args), one-line help); imported only when chosen
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data synth": ("fedad.common.commands.synth", "write a synthetic 12-sensor plant, one shard per node"),
    "data emit": ("fedad.common.commands.emit", "a live plant: each node's records appended to a growing CSV"),
    "train": ("fedad.common.commands.train", "train a local autoencoder detector on one data file"),
    "score": ("fedad.common.commands.score", "score records with a trained model: score,is_anomaly per row"),
    "evaluate": ("fedad.common.commands.evaluate", "metrics of a model (and baselines) on labelled data"),
    "demo": ("fedad.server.demo", "synthetic plant + server + N clients on 127.0.0.1, results vs baselines"),
    "keygen": ("fedad.common.commands.keygen", "make a Paillier key pair (public.key, private.key)"),
    "certs": ("fedad.common.commands.certs", "make the plant's TLS CA, server certificate, node certificates"),
    "certs sign": ("fedad.common.commands.certs_sign", "CA side of enrollment: sign a node's request (NAME.csr)"),
    "enroll": ("fedad.common.commands.enroll", "on an edge node: make its TLS key and a signing request"),
}

USAGE = "fedad <command> [options]   (fedad <command> --help for a command's options)\n\ncommands:\n" + "\n".join(
    f"  {name:<12} {doc}" for name, (_, doc) in SUBCOMMANDS.items()
)


def _split(argv: list[str]) -> tuple[str | None, list[str]]:
    for name in sorted(SUBCOMMANDS, key=lambda n: -len(n.split())):
        words = name.split()
        if argv[: len(words)] == words:
            return name, argv[len(words) :]
    return None, argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fedad``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name, rest = _split(argv)
    if name is None:
        if not argv or argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        if argv[0] == "--version":
            from fedad.common.config import version

            print(f"fedad {version()}")
            return 0
        print(f"fedad: error: unknown command '{' '.join(argv[:2])}'\n\n{USAGE}", file=sys.stderr)
        return 2
    module_name, doc = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = ArgumentParser(prog=f"fedad {name}", description=module.__doc__ or doc, formatter_class=HelpFormatter)
    add_config_option(parser)
    module.add_arguments(parser)
    return run_cli(lambda: module.run(parse_args(parser, rest)), parser.prog)


if __name__ == "__main__":
    sys.exit(main())
