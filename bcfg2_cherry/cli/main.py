"""``bcfg2-cherry``: one command, a subcommand per job (serve, info, admin, client)."""
import argparse
import importlib
import sys

from bcfg2_cherry import __version__

#: subcommand -> module under bcfg2_cherry.cli with ``add_parser(subparsers)``
SUBCOMMANDS = ["serve", "info", "admin", "client"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bcfg2-cherry",
        description="A Python 3 server for the Bcfg2 configuration-management protocol.")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module("bcfg2_cherry.cli." + name)
        except ImportError as err:
            if err.name != "bcfg2_cherry.cli." + name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
