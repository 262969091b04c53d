"""The models a visitor can pick (vitdense.web.pool): the bundled one first, unavailable and unknown
models as one message."""
from __future__ import annotations

import gradio as gr
import pytest

from vitdense import web as webapp
from tests.web import _handlers
from tests.web._handlers import CATS

#: the module-scoped autouse fixture (as in tests/web/tabs/conftest.py): the session's bundled extractor
pool = _handlers.pool


def test_model_choices_start_with_the_bundled_model():
    choices = webapp.model_choices(online=False)
    assert choices[0][1] == "dinov2_vits14_imgfocus"
    online = [name for _, name in webapp.model_choices(online=True)]
    assert "dino_vits8" in online


def test_unavailable_and_unknown_models_are_messages(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")              # no download attempt
    if webapp.weights_status("dino_vits8").available:
        pytest.skip("dino_vits8 weights are cached on this machine")
    with pytest.raises(gr.Error, match="weights of dino_vits8 .* are not available"):
        webapp.run_pca(CATS[:1], model="dino_vits8", load_size=112)
    with pytest.raises(gr.Error, match="unknown model 'nope'"):
        webapp.run_pca(CATS[:1], model="nope")
