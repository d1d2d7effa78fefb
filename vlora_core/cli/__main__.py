"""``python -m vlora_core.cli``: the ``vlora`` command."""

import sys

from . import main

sys.exit(main())
