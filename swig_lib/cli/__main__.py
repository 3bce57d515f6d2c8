"""``python -m swig_lib.cli``: the ``swig`` command."""

import sys

from swig_lib.cli import main

sys.exit(main())
