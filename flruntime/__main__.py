"""``python -m flruntime`` runs the command line."""

import sys

from flruntime.cli.main import main

sys.exit(main())
