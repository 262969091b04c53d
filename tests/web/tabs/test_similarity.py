"""The Similarity tab's handlers (vitdense.web.tabs.similarity): the top patches of a clicked point."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from vitdense import web as webapp
from tests.web._handlers import CAT_A, CAT_B, LOAD, ma


def test_similarity_inspector_top_patches():
    a, b, md, session = webapp.run_similarity(CAT_A, CAT_B, load_size=LOAD)
    assert a.shape == (266, 400, 3) and "click" in md
    map_a, map_b, md, info = webapp.similarity_point(session, 200, 200, 5)
    assert len(info["top_a"]) == len(info["top_b"]) == 5
    # the most similar patch of A to the query is the query's own cell
    assert info["top_a"][0]["x"] == info["query_cell"]["x"] and info["top_a"][0]["y"] == info["query_cell"]["y"]
    assert info["top_a"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    ex, ey = ma.cat_b_from_a(200, 200)
    assert np.hypot(info["top_b"][0]["x"] - ex, info["top_b"][0]["y"] - ey) < 25, info["top_b"][0]
    assert map_a.shape == a.shape and map_b.shape == b.shape and not np.array_equal(map_a, a)
    with pytest.raises(gr.Error, match="extract the images first"):
        webapp.similarity_point(None, 1, 1)
