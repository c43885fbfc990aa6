"""``emgp-md`` command line: the top parser and error handling; the commands live in one module per group.

Every group module (:mod:`~emgp_md.cli.md`, :mod:`~emgp_md.cli.train`, :mod:`~emgp_md.cli.models`,
:mod:`~emgp_md.cli.data`, :mod:`~emgp_md.cli.analysis`) exposes ``register(sub)``, which adds its
commands with ``set_defaults(func=command)``; a command is a function ``(args) -> int`` that parses,
calls the library and reports. No logic lives here.
"""

from __future__ import annotations

import argparse
import logging

from emgp_md.cli import analysis, data, learn, md, models, train

log = logging.getLogger("emgp_md.cli")  # the name error messages have always carried

#: Group modules in the order their commands appear in ``emgp-md --help``.
GROUPS = (md, train, learn, models, data, analysis)


def build_parser() -> argparse.ArgumentParser:
    """The ``emgp-md`` parser with every group's commands."""
    parser = argparse.ArgumentParser(prog="emgp-md", description="3D-EMGP energy models for ASE molecular dynamics")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``emgp-md``; returns the exit code (2 with the message logged on ValueError or FileNotFoundError)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
