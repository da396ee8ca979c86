"""``python -m edge run|simulate|check --config FILE``."""
import sys

from .cli import main

sys.exit(main())
