"""vitdense.apps.video on a real clip: a pan / zoom over a photograph, written with ffmpeg and read back."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitdense import draw
from vitdense.apps.video import label_flicker, read_video, sample_indices, temporal_ema, video_parts, write_video
from vitdense.errors import ImageError, ParameterError

N_FRAMES = 12
SIZE = (106, 160)  # H x W of every frame


def make_clip(photo: np.ndarray, n: int = N_FRAMES) -> list[np.ndarray]:
    """Pan left-to-right while zooming in slightly over ``photo`` (real pixels, LANCZOS resized)."""
    H, W = photo.shape[:2]
    frames = []
    for i in range(n):
        s = 1.0 - 0.025 * i
        h, w = int(H * s), int(W * s)
        y0, x0 = (H - h) // 2, int((W - w) * i / (n - 1))
        crop = Image.fromarray(photo[y0:y0 + h, x0:x0 + w])
        frames.append(np.asarray(crop.resize(SIZE[::-1], Image.Resampling.LANCZOS)))
    return frames


@pytest.fixture(scope="module")
def clip(photos, tmp_path_factory):
    """(frames, mp4 path, PNG folder path): 12 frames of 106 x 160 at 8 fps."""
    frames = make_clip(photos["chelsea"])
    d = tmp_path_factory.mktemp("clip")
    mp4 = write_video(frames, d / "pan.mp4", fps=8)
    folder = d / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):  # unpadded numbers: read back in natural order
        Image.fromarray(f).save(folder / f"f{i}.png")
    return frames, mp4, folder


@pytest.fixture(scope="module")
def result(bundled_extractor, clip):
    """video_parts on the mp4 read back (the same frames a user's video gives)."""
    frames, mp4, _ = clip
    decoded, fps = read_video(mp4)
    res = video_parts(bundled_extractor, decoded, fps=fps, num_sampled_frames=4, load_size=112,
                      num_parts=3, temporal_smoothing=0.6)
    return decoded, res


# ------------------------------------------------------------------------------------------ reading
def test_read_mp4(clip):
    frames, mp4, _ = clip
    got, fps = read_video(mp4)
    assert len(got) == N_FRAMES and fps == pytest.approx(8.0)
    assert all(g.shape == SIZE + (3,) and g.dtype == np.uint8 for g in got)
    err = [np.abs(g.astype(int) - f).mean() for g, f in zip(got, frames)]
    assert max(err) < 8.0                                   # lossy, but the same pictures
    assert np.abs(got[0].astype(int) - frames[-1]).mean() > 2 * max(err)   # and in order


def test_read_folder_natural_order_and_options(clip):
    frames, _, folder = clip
    got, fps = read_video(folder)
    assert len(got) == N_FRAMES and fps == 10.0
    assert all(np.array_equal(g, f) for g, f in zip(got, frames))          # f2 before f10
    sub, fps2 = read_video(folder, step=3, max_frames=3, max_side=80)
    assert len(sub) == 3 and fps2 == pytest.approx(10.0 / 3)
    assert sub[1].shape == (53, 80, 3)
    ref = np.asarray(Image.fromarray(frames[3]).resize((80, 53), Image.Resampling.LANCZOS))
    assert np.abs(sub[1].astype(int) - ref).mean() < 1.0


def test_read_errors(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 20)
    with pytest.raises(ImageError, match="not a readable video"):
        read_video(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no frame images"):
        read_video(tmp_path / "empty")
    with pytest.raises(ParameterError):
        read_video(tmp_path, step=0)


def test_write_errors(clip, tmp_path):
    frames = clip[0]
    with pytest.raises(ParameterError, match="suffix"):
        write_video(frames, tmp_path / "x.txt")
    with pytest.raises(ParameterError, match="size"):
        write_video([frames[0], frames[0][:50]], tmp_path / "x.mp4")
    with pytest.raises(ParameterError):
        write_video([], tmp_path / "x.gif")


# ------------------------------------------------------------------------------------------ helpers
def test_sample_indices_even():
    assert sample_indices(12, 4).tolist() == [0, 4, 7, 11]
    assert sample_indices(3, 10).tolist() == [0, 1, 2]
    with pytest.raises(ParameterError):
        sample_indices(5, 0)


def test_temporal_ema_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, 5, 3, generator=g)
    assert torch.equal(temporal_ema(x, 0.0), x)
    const = torch.ones(10, 2, 2, 3) * 0.7
    assert torch.allclose(temporal_ema(const, 0.8), const)
    fwd = temporal_ema(x, 0.5, bidirectional=False)
    assert torch.allclose(fwd[1], 0.5 * x[0] + 0.5 * x[1])
    tv = lambda t: float((t[1:] - t[:-1]).abs().mean())  # noqa: E731
    assert tv(temporal_ema(x, 0.7)) < 0.5 * tv(x)
    with pytest.raises(ParameterError):
        temporal_ema(x, 1.0)


# ------------------------------------------------------------------------------------------ video parts
def test_one_label_map_per_frame(result):
    frames, res = result
    assert res.num_frames == N_FRAMES == len(frames)
    assert res.sampled_indices.tolist() == [0, 4, 7, 11]
    h, w = res.geometry.grid
    assert res.labels.shape == (N_FRAMES, h, w) and res.scores.shape == (N_FRAMES, h, w, res.num_parts + 1)
    assert 1 <= res.num_parts <= 3
    assert res.labels.min() >= 0 and res.labels.max() <= res.num_parts
    full = res.label_map(5)
    assert full.shape == SIZE and set(np.unique(full)) <= set(range(res.num_parts + 1))
    # the cat's face fills the clip: most of every frame is some part, and every part is used
    assert (res.labels > 0).mean() > 0.4
    assert set(range(1, res.num_parts + 1)) <= set(np.unique(res.labels).tolist())


def test_propagation_reproduces_the_sampled_frames(result):
    """Without smoothing, a sampled frame's label is the part co-segmentation's own grid label."""
    _, res = result
    assert np.array_equal(res.bg_centroids, res.parts.bg_centroids)   # the very centroids the parts used
    assert np.array_equal(res.part_centroids, res.parts.part_centroids)
    for j, i in enumerate(res.sampled_indices):
        assert np.array_equal(res.raw_labels[i], res.parts.grid_part_maps[j])


def test_smoothing_reduces_flicker(result):
    _, res = result
    raw, smooth = res.flicker(smoothed=False), res.flicker()
    assert label_flicker(res.raw_labels) == raw
    assert raw > 0.0
    assert smooth < 0.85 * raw, (raw, smooth)            # measured: about 0.07 -> 0.045


def test_annotated_video_round_trip(result, tmp_path):
    frames, res = result
    vis = draw.draw_video_parts(frames, res)
    assert len(vis) == N_FRAMES and vis[0].shape == SIZE + (3,)
    # part p has the same colour in every frame
    lab0, lab9 = res.label_map(0), res.label_map(9)
    p = int(np.bincount(lab0[lab0 > 0]).argmax())
    c0 = draw.overlay_parts(np.zeros_like(frames[0]), lab0, edges=False)[lab0 == p]
    c9 = draw.overlay_parts(np.zeros_like(frames[9]), lab9, edges=False)[lab9 == p]
    assert np.array_equal(np.unique(c0, axis=0), np.unique(c9, axis=0))
    for name in ("parts.mp4", "parts.gif"):
        path = write_video(vis, tmp_path / name, fps=res.fps)
        back, fps = read_video(path)
        assert len(back) == N_FRAMES and back[0].shape == SIZE + (3,)
        assert fps == pytest.approx(8.0, rel=0.05)
        assert np.abs(back[4].astype(int) - vis[4]).mean() < 12.0


def test_video_parts_errors(bundled_extractor, clip):
    frames = clip[0]
    with pytest.raises(ParameterError):
        video_parts(bundled_extractor, frames, temporal_smoothing=1.0)
    with pytest.raises(ParameterError):
        video_parts(bundled_extractor, [])
    with pytest.raises(ImageError, match="size"):
        video_parts(bundled_extractor, [frames[0], frames[1][:60]], num_sampled_frames=2, load_size=56)
