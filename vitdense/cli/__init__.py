"""The command line: ``vitdense COMMAND`` (application commands derive from the registry)."""
from vitdense.cli.main import COMMANDS, build_parser, main  # noqa: F401
