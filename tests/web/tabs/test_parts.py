"""The Parts tab's handlers (vitdense.web.tabs.parts): part co-segmentation, re-clustering from the
cache, highlights, toggles and opacity."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from vitdense import web as webapp
from tests.web._handlers import CATS, LOAD, png, read_zip


def test_part_cosegmentation_and_reclustering_from_the_cache(bundled_extractor):
    gallery, fig, selector, legend, summary, zip_path, session = webapp.run_part_cosegmentation(
        CATS, 4, load_size=LOAD)
    assert summary["num_parts"] == 4 and len(gallery) == 5
    files = read_zip(zip_path)
    maps = [png(files[f"label_maps/{i + 1:02d}_{Path(p).stem}.png"]) for i, p in enumerate(CATS)]
    assert all(m.max() <= 4 for m in maps)
    # parts are common to the set: the largest part appears in every image
    assert all((m == 1).mean() > 0.02 for m in maps), [(m == 1).mean() for m in maps]
    # consistent colours: the largest part is tinted alike in every image (blue = PALETTE[0])
    colours = np.array([gallery[i][0][maps[i] == 1].mean(axis=0) for i in range(5)])
    assert np.abs(colours - colours.mean(axis=0)).max() < 30, colours
    assert (colours[:, 2] > colours[:, 0] + 20).all(), colours
    # the plotly view shows the part under the cursor
    hover = [t for t in fig.data if t.type == "heatmap"][0]
    assert "part 1" in set(np.asarray(hover.text).ravel()) and "background" in set(np.asarray(hover.text).ravel())
    assert "part 1" in legend
    # re-clustering into 3 parts reuses the session's descriptors: no network pass
    calls = bundled_extractor.num_forward_calls
    out = webapp.recluster_parts(session, 3)
    assert bundled_extractor.num_forward_calls == calls
    assert out[4]["num_parts"] == 3 and out[5] is None and \
        json.loads(read_zip(webapp.parts_download(out[-1]))["params.json"])["num_parts"] == 3
    fig4 = webapp.part_view(out[-1], 4)
    assert fig4.layout.title.text == Path(CATS[4]).name
    with pytest.raises(gr.Error, match="part co-segmentation first"):
        webapp.recluster_parts(None, 3)


def test_interactive_part_masks_highlight_toggle_and_opacity(bundled_extractor):
    """Click a part in one image: that part stays coloured in every image, the others look like the
    dimmed background; toggles hide parts; the opacity sets the colour blend. No network pass."""
    from vitdense.draw import part_colors
    from vitdense.web.guard import STORE  # the page's state is a key of the server's store
    *_, session = webapp.run_part_cosegmentation(CATS[:3], 3, load_size=LOAD, crf=False)
    calls = bundled_extractor.num_forward_calls
    maps = [np.asarray(m) for m in STORE.get(session).result.part_maps]
    ys, xs = np.nonzero(maps[1] == 1)
    gallery, click_img, fig, md, s2 = webapp.part_highlight(session, 1, int(xs[len(xs) // 2]),
                                                            int(ys[len(ys) // 2]))
    assert STORE.get(s2).highlight == 1 and "Part 1 highlighted in every image" in md
    assert bundled_extractor.num_forward_calls == calls
    for (img, _), pm, path in zip(gallery, maps, CATS[:3]):
        photo = np.asarray(Image.open(path).convert("RGB")).astype(int)
        other = (pm > 1)
        if other.any():                        # other parts: dimmed like the background (2/5)
            diff = np.abs(img[other].astype(int) - photo[other] * 2 // 5)
            assert np.median(diff) <= 1, np.median(diff)
        if (pm == 1).any():                    # the part itself: blended with its colour
            assert np.abs(img[pm == 1].astype(int) - photo[pm == 1] * 2 // 5).mean() > 20
    np.testing.assert_array_equal(click_img, gallery[1][0])
    # the shares table: one row per image, each part's share of the image's pixels
    for im, pm in zip(STORE.get(session).images, maps):
        assert f"<td>{im.name}</td>" in md
        assert f"{100 * (pm == 1).mean():.1f}%" in md
    # clicking the background shows every part again
    bg = np.argwhere(maps[0] == 0)[0]
    assert STORE.get(webapp.part_highlight(s2, 0, int(bg[1]), int(bg[0]))[-1]).highlight == 0
    # toggles: only part 2 shown; opacity 1: part pixels take the palette colour exactly (but edges)
    gallery, _, _, _, s3 = webapp.part_display(session, [2], 1.0)
    colour = part_colors(3)[1]
    for (img, _), pm in zip(gallery, maps):
        inside = pm == 2
        if inside.sum() > 50:
            assert np.mean(np.all(img[inside] == colour, axis=1)) > 0.6
        hidden = pm == 1
        if hidden.any():
            assert not np.any(np.all(img[hidden] == part_colors(3)[0], axis=1).mean() > 0.5)
    with pytest.raises(gr.Error, match="parts 1..3"):
        webapp.part_display(session, [7], 0.5)


def test_parts_toggles_win_over_a_highlight_and_show_all(bundled_extractor):
    """Toggling parts while one is highlighted shows the ticked parts (the highlight goes); "Show all
    parts" brings every part back; the hover view (plotly) follows the toggles and the opacity."""
    from vitdense.web.guard import STORE
    from vitdense.web.tabs import parts as parts_tab
    *_, key = webapp.run_part_cosegmentation(CATS[:3], 3, load_size=LOAD, crf=False)
    maps = [np.asarray(m) for m in STORE.get(key).result.part_maps]
    ys, xs = np.nonzero(maps[0] == 1)
    lit, *_ = webapp.part_highlight(key, 0, int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
    gallery, _, fig, md, _ = webapp.part_display(key, [2, 3], 0.55)
    assert STORE.get(key).highlight == 0 and STORE.get(key).shown == (2, 3)
    changed = [not np.array_equal(a, b) for (a, _), (b, _) in zip(gallery, lit)]
    assert any(changed), "toggling parts while one was highlighted changed nothing"
    from vitdense.web.guard import status_reader          # each action says what it did
    assert status_reader("parts")().startswith("Showing parts 2, 3 at opacity 0.55")
    hover_parts = set(np.unique(np.asarray(fig.data[-1].z)))   # 0 background, p part p
    assert 1 not in hover_parts and hover_parts & {2, 3}, hover_parts   # part 1 hidden there too
    *view, toggles = parts_tab.show_all_parts(key)
    assert STORE.get(key).shown is None and STORE.get(key).highlight == 0
    assert toggles.value == [1, 2, 3]
    np.testing.assert_array_equal(view[0][0][0], parts_tab._view(STORE.get(key), 0))
    with pytest.raises(gr.Error, match="part co-segmentation first"):
        webapp.part_highlight(None, 0, 1, 1)
