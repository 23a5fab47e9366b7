"""``python -m nngrpc``: list, describe, call and health-check servers.

See ``python -m nngrpc --help`` and nngrpc._cli.
"""

import sys

from nngrpc._cli import main

if __name__ == "__main__":
    sys.exit(main())
