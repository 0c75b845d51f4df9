"""``python -m kalm``: see ``kalm.cli``."""

import sys

from kalm.cli import main

if __name__ == "__main__":
    sys.exit(main())
