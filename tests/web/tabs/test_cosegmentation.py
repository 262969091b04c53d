"""The Co-segmentation tab's handlers (vitdense.web.tabs.cosegmentation): masks against the pasted
cat heads of assets/cats/, the intermediate maps on demand."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from vitdense import web as webapp
from tests.web._handlers import CATS, LOAD, ma, png, read_zip


@pytest.fixture(scope="module")
def coseg_run():
    return webapp.run_cosegmentation(CATS, load_size=LOAD)


def _box_scores(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float]:
    gt = np.zeros(mask.shape, bool)
    y0, x0, y1, x1 = box
    gt[y0:y1, x0:x1] = True
    inter = (mask & gt).sum()
    return inter / max((mask | gt).sum(), 1), inter / max(mask.sum(), 1)


def test_cosegmentation_masks_cover_the_pasted_cat(coseg_run):
    overlays, cutouts, md, summary, zip_path, session = coseg_run
    assert len(overlays) == len(cutouts) == len(CATS) == 5
    assert [name for _, name in overlays] == [Path(p).name for p in CATS]
    files = read_zip(zip_path)
    masks = {n: png(files[f"masks/{i + 1:02d}_{Path(n).stem}.png"]) > 127
             for i, n in enumerate(Path(p).name for p in CATS)}
    for name in ma.CAT_PASTES:
        iou, precision = _box_scores(masks[Path(name).name], ma.face_box(name))
        assert iou > 0.6 and precision > 0.8, (name, iou, precision)
    for i, p in enumerate(CATS):                      # masks at each image's size, summary agrees
        h, w = np.asarray(Image.open(p)).shape[:2]
        m = masks[Path(p).name]
        assert m.shape == (h, w)
        assert abs(summary["images"][i]["foreground_fraction"] - m.mean()) < 1e-3
        # the cut-out keeps the photo inside the mask and replaces the outside by a checkerboard
        photo = np.asarray(Image.open(p).convert("RGB"))
        np.testing.assert_array_equal(cutouts[i][0][m], photo[m])
        assert np.abs(cutouts[i][0][~m].astype(int) - photo[~m]).mean() > 20
    assert json.loads(files["params.json"])["thresh"] == 0.065
    # the vote in words, with the Votes % of the page (DINOv2: counted where a cluster appears)
    assert "clusters" in md and "75% of the images where it appears vote for it" in md and "needs" not in md


def test_intermediate_maps_on_demand(coseg_run):
    clusters, saliency = webapp.coseg_maps(coseg_run[-1])
    assert len(clusters) == len(saliency) == 5
    assert clusters[0][0].shape == saliency[0][0].shape == np.asarray(Image.open(CATS[0])).shape
    assert "salient" in clusters[0][1]
    with pytest.raises(gr.Error, match="co-segmentation first"):
        webapp.coseg_maps(None)
