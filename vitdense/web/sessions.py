"""The old name of :mod:`vitdense.web.state` (a tab's ``gr.State`` key into the result store),
kept so that old imports still work; ``store`` is :func:`vitdense.web.state.save`."""
from vitdense.web.state import STATE_TTL_S, keep, load, release_session, save, session_state, updated  # noqa: F401

store = save
