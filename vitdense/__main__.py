"""``python -m vitdense`` = the ``vitdense`` command."""
import sys

from vitdense.cli.main import main

sys.exit(main())
