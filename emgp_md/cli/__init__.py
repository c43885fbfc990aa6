"""``emgp-md`` command line (application floor: nothing in the library imports it).

``main`` is the console-script entry point (``emgp-md = "emgp_md.cli:main"``); see :mod:`emgp_md.cli.main`.
The re-export makes the attribute ``emgp_md.cli.main`` the function; the module is
``sys.modules["emgp_md.cli.main"]``.
"""

from emgp_md.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
