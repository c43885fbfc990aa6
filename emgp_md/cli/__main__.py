"""``python -m emgp_md.cli``: the same as the ``emgp-md`` console script."""

import sys

from emgp_md.cli import main

sys.exit(main())
