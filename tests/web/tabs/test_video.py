"""The Video tab's handler (vitdense.web.tabs.video): parts of a clip (when vitdense.apps.video provides it)."""
from __future__ import annotations

import pytest

from vitdense import web as webapp
from tests.web._handlers import ASSETS, png, read_zip


@pytest.mark.skipif(not webapp.video_available(), reason="vitdense.apps.video has no video_parts")
def test_video_parts_clip():
    clip = str(ASSETS / "video/cat_pan.mp4")
    out, md, zip_path = webapp.run_video(clip, 3, 3, load_size=112)
    from vitdense.apps.video import read_video
    frames, _ = read_video(out)
    assert len(frames) == 20
    files = read_zip(zip_path)
    maps = [png(files[n]) for n in sorted(files) if n.startswith("label_maps/")]
    assert len(maps) == 20 and maps[0].shape == (150, 224)
    assert max(int(m.max()) for m in maps) <= 3 and any((m > 0).any() for m in maps)
    assert "3 parts" in md
