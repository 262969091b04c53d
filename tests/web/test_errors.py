"""Handler errors as the visitor sees them (vitdense.web.errors): out of memory and unexpected errors
become one clear line, the details go to the server log."""
from __future__ import annotations

import logging

import gradio as gr
import pytest
import torch

from vitdense import web as webapp
from tests.web import _handlers
from tests.web._handlers import CAT_A, CAT_B, LOAD

#: the module-scoped autouse fixture (as in tests/web/tabs/conftest.py): the session's bundled extractor
pool = _handlers.pool


def test_out_of_memory_and_unexpected_errors_become_messages(monkeypatch, bundled_extractor, caplog):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(bundled_extractor, "forward", oom)
    with pytest.raises(gr.Error, match="Out of memory.*reduce load_size"):
        webapp.run_correspondences(CAT_A, CAT_B, load_size=LOAD)
    monkeypatch.undo()

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    from vitdense.web.tabs import correspondences as corr_tab
    monkeypatch.setattr(corr_tab, "find_correspondences_descriptors", boom)
    with caplog.at_level(logging.ERROR, logger="vitdense.web"):
        with pytest.raises(gr.Error) as info:
            webapp.run_correspondences(CAT_A, CAT_B, load_size=112)
    assert "secret" not in str(info.value) and "went wrong" in str(info.value)
    assert "unexpected error in run_correspondences" in caplog.text and "secret internal detail" in caplog.text
