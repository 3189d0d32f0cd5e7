"""``python -m dskd_align ...``: the same commands as ``dskd-align``."""

import sys

from dskd_align.cli import main

sys.exit(main())
