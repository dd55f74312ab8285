"""``python -m dendritic.cli``: the ``dendritic`` command."""

import sys

from dendritic.cli.main import main

sys.exit(main())
