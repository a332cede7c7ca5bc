"""`python -m speechlm` runs the `speechlm` command."""

import sys

from speechlm.cli import main

sys.exit(main())
