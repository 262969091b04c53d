"""The tabs' handlers use the session's bundled extractor (the module-scoped autouse fixture ``pool``)."""
from tests.web import _handlers

pool = _handlers.pool
