"""``python -m vitdense`` = the ``vitdense`` command."""
import sys

from .cli import main

sys.exit(main())
