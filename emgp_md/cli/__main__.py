"""``python -m emgp_md.cli``: the same as the ``emgp-md`` console script."""

import sys

from emgp_md.cli import main

if __name__ == "__main__":
    sys.exit(main())
