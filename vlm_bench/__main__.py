"""``python -m vlm_bench``: run the format benchmark (see ``--help``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
