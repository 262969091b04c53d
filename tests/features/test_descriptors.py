"""Descriptor types (vitdense.features.descriptors): geometry worked out by hand, real descriptors of a photo."""
from __future__ import annotations

import dataclasses
import inspect
import re

import numpy as np
import pytest
import torch

from vitdense.errors import ParameterError
from vitdense.features.descriptors import (
    DESCRIPTOR_KNOBS,
    FACETS,
    DescriptorSettings,
    Geometry,
    check_descriptor_set,
)
from vitdense.features.extractor import Extractor
from vitdense.features.models import MODELS

#: 448 x 672 photo resized to 224 x 336 (2 original pixels per resized pixel), patch 14, stride 14:
#: a 16 x 24 grid whose cell (i, j) is centred at resized (14 i + 7, 14 j + 7) = original (28 i + 14, 28 j + 14)
TWICE = Geometry((448, 672), (224, 336), (16, 24), 14, 14)
#: 230 x 340, not resized, patch 14, stride 14: the 16 x 24 grid covers the top-left 224 x 336 pixels only
UNCOVERED = Geometry((230, 340), (230, 340), (16, 24), 14, 14)
BUNDLED = MODELS["dinov2_vits14_imgfocus"]
DINO_V1 = MODELS["dino_vits8"]


# ------------------------------------------------------------------------------------------- Geometry
def test_cell_centre_is_the_patch_centre_in_original_pixels():
    assert TWICE.scale == (2.0, 2.0)
    assert TWICE.cell_to_pixel(0).tolist() == [14.0, 14.0]
    assert TWICE.cell_to_pixel(3 * 24 + 5).tolist() == [98.0, 154.0]           # (3, 5)
    assert TWICE.cell_to_pixel(16 * 24 - 1).tolist() == [434.0, 658.0]        # (15, 23)
    # chelsea (300 x 451) at load 224, stride 7: 300/224 and 451/336 original pixels per resized one
    g = Geometry((300, 451), (224, 336), (31, 47), 14, 7)
    assert g.scale == pytest.approx((300 / 224, 451 / 336))
    assert g.cell_to_pixel(0) == pytest.approx([7 * 300 / 224, 7 * 451 / 336])
    assert g.cell_to_pixel(2 * 47 + 1) == pytest.approx([21 * 300 / 224, 14 * 451 / 336])
    # the last patch ends where the grid's coverage ends: 14 + 30 * 7 = 224 resized rows = 300 original
    assert g.cell_to_pixel(31 * 47 - 1) + 7 * np.array(g.scale) == pytest.approx([300, 451])


def test_cell_centers_are_row_major_t_by_2():
    c = TWICE.cell_centers()
    assert c.shape == (16 * 24, 2)
    grid = c.reshape(16, 24, 2)
    assert (grid[:, :, 0] == (28 * np.arange(16) + 14)[:, None]).all()    # y: one per row
    assert (grid[:, :, 1] == (28 * np.arange(24) + 14)[None, :]).all()    # x: one per column
    assert TWICE.cell_to_pixel(np.array([[0, 1, 24]])).tolist() == [[[14, 14], [14, 42], [42, 14]]]


def test_grid_to_pixel_takes_fractional_cells():
    assert TWICE.grid_to_pixel(0.5, 0.5).tolist() == [28.0, 28.0]      # half-way between centres 14 and 42
    assert TWICE.grid_to_pixel(-0.5, 15).tolist() == [0.0, 434.0]      # the first patch's top edge
    out = TWICE.grid_to_pixel(np.array([[0.0, 1.0, 2.25]]), np.array([[1.0, 0.0, 0.0]]))
    assert out.shape == (1, 3, 2)
    assert out.tolist() == [[[14, 42], [42, 14], [77, 14]]]


def test_pixel_to_cell_picks_the_nearest_centre():
    assert TWICE.pixel_to_cell(0, 0) == 0
    # centres at 14 and 42: pixel 27 (covering [27, 28)) is nearer row 0, pixel 28 nearer row 1
    assert TWICE.pixel_to_cell(27.9, 0) == 0
    assert TWICE.pixel_to_cell(28, 0) == 24
    assert TWICE.pixel_to_cell(0, 28) == 1
    assert TWICE.pixel_to_cell(98, 154) == 3 * 24 + 5
    # below / right of the grid's 224 x 336 coverage: clamped to the last cell
    assert UNCOVERED.pixel_to_cell(229, 339) == 16 * 24 - 1
    assert UNCOVERED.pixel_to_cell(229, 0) == 15 * 24


@pytest.mark.parametrize("y,x", [(230, 0), (0, 340), (-0.5, 3), (5, -1)])
def test_pixel_to_cell_refuses_points_outside(y, x):
    with pytest.raises(ParameterError, match=re.escape(f"point (y={y}, x={x}) is outside the image of 230 x 340 pixels")):
        UNCOVERED.pixel_to_cell(y, x)


def test_contains_is_half_open():
    assert UNCOVERED.contains(0, 0) and UNCOVERED.contains(229.99, 339.99)
    assert not UNCOVERED.contains(230, 0) and not UNCOVERED.contains(0, 340)
    assert not UNCOVERED.contains(-0.01, 0) and not UNCOVERED.contains(0, -0.01)


def test_upsample_bilinear_samples_each_pixel_at_its_grid_position():
    # 4 x 6 pixels, patch = stride = 2: centres at pixels 1, 3 (rows) and 1, 3, 5 (columns). Pixel k's centre
    # k + 0.5 sits at grid position (k + 0.5 - 1) / 2: rows -0.25, 0.25, 0.75, 1.25, columns -0.25 ... 2.25,
    # clamped to the grid. The map 100 i + 10 j is linear, so bilinear sampling gives 100 gy + 10 gx.
    g = Geometry((4, 6), (4, 6), (2, 3), 2, 2)
    m = np.array([[0.0, 10.0, 20.0], [100.0, 110.0, 120.0]])
    expected = np.add.outer([0, 25, 75, 100], [0, 2.5, 7.5, 12.5, 17.5, 20])
    up = g.upsample(m, "bilinear")
    assert up.shape == (4, 6) and up.dtype == np.float32
    np.testing.assert_allclose(up, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(g.upsample(torch.tensor(m), "bilinear"), expected, rtol=0, atol=1e-5)


def test_upsample_nearest_repeats_cells_and_keeps_the_dtype():
    # 8 x 12 original resized to 4 x 6, patch = stride = 2: every cell covers a 4 x 4 block of original pixels
    g = Geometry((8, 12), (4, 6), (2, 3), 2, 2)
    labels = np.array([[1, 2, 3], [4, 5, 6]])
    blocks = np.kron(labels, np.ones((4, 4), np.int64))
    up = g.upsample(torch.from_numpy(labels), "nearest")
    assert up.dtype == np.int64 and np.array_equal(up, blocks)
    mask = g.upsample(labels > 3, "nearest")
    assert mask.dtype == bool and np.array_equal(mask, blocks > 3)
    channels = g.upsample(np.stack([labels, 10 * labels], axis=-1), "nearest")   # h x w x C -> H0 x W0 x C
    assert channels.shape == (8, 12, 2)
    assert np.array_equal(channels[..., 0], blocks) and np.array_equal(channels[..., 1], 10 * blocks)
    # pixels past the last centre (rows 224-229, columns 336-339 of UNCOVERED) take the last cell
    ids = UNCOVERED.upsample(np.arange(16 * 24).reshape(16, 24), "nearest")
    assert ids.shape == (230, 340)
    assert ids[229, 339] == 16 * 24 - 1 and ids[229, 0] == 15 * 24 and ids[0, 339] == 23
    assert np.array_equal(ids[14 * np.arange(16) + 7][:, 14 * np.arange(24) + 7], np.arange(16 * 24).reshape(16, 24))


def test_upsample_refuses_an_unknown_mode():
    with pytest.raises(ParameterError, match="mode='bicubic': expected 'nearest' or 'bilinear'"):
        TWICE.upsample(np.zeros((16, 24)), "bicubic")


# ---------------------------------------------------------------------------------- ImageDescriptors
@pytest.fixture(scope="module")
def coffee(bundled_extractor, photos):
    """The coffee photo (400 x 600) at load size 112, stride 14: a 112 x 168 image, an 8 x 12 grid."""
    [d] = bundled_extractor.extract(photos["coffee"], layer=11, facet="token", stride=14, load_size=112,
                                    saliency=True, include_cls=True)
    return d


def test_real_descriptors_fill_every_field(coffee):
    d = coffee
    assert d.geometry == Geometry((400, 600), (112, 168), (8, 12), 14, 14)
    assert d.grid == (8, 12)
    assert d.descs.shape == (96, 384) and d.descs.dtype == torch.float32      # T x D, ViT-S width 384
    assert d.cls.shape == (384,)
    assert d.saliency.shape == (8, 12)
    assert float(d.saliency.min()) == 0.0 and float(d.saliency.max()) == 1.0  # min-max per image
    assert d.params["layer"] == [11] and d.params["facet"] == "token" and d.params["stride"] == 14


def test_num_bytes_counts_every_tensor(coffee):
    # float32: 96 x 384 descriptors, 8 x 12 saliency, 384 CLS values
    assert coffee.num_bytes == 4 * (96 * 384 + 96 + 384) == 149376
    assert dataclasses.replace(coffee, saliency=None, cls=None).num_bytes == 4 * 96 * 384
    assert dataclasses.replace(coffee, descs=coffee.descs.half(), cls=None).num_bytes == 2 * 96 * 384 + 4 * 96


def test_to_returns_self_on_its_device_and_a_copy_elsewhere(coffee):
    assert coffee.to("cpu") is coffee and coffee.to(torch.device("cpu")) is coffee
    moved = coffee.to("meta")
    assert moved is not coffee
    assert {t.device.type for t in (moved.descs, moved.saliency, moved.cls)} == {"meta"}
    assert moved.descs.shape == coffee.descs.shape and moved.geometry == coffee.geometry
    assert moved.params == coffee.params and moved.params is not coffee.params
    assert coffee.descs.device.type == "cpu"
    assert dataclasses.replace(coffee, saliency=None, cls=None).to("meta").cls is None


# ------------------------------------------------------------------------------- check_descriptor_set
def test_check_descriptor_set_returns_the_t_by_d_tensors(coffee):
    [t] = check_descriptor_set(coffee)
    assert t is coffee.descs
    narrow = dataclasses.replace(coffee, descs=coffee.descs[:, :100])
    out = check_descriptor_set((coffee, narrow), same_dim=False)
    assert [tuple(x.shape) for x in out] == [(96, 384), (96, 100)]
    assert len(check_descriptor_set([coffee, coffee], minimum=2)) == 2


def test_check_descriptor_set_sentences(coffee):
    short = dataclasses.replace(coffee, descs=coffee.descs[:-1])
    cases = [
        (([],), "descs is empty: give the descriptors of at least one image"),
        (([coffee], "descs", 2), "descs holds 1 image(s): give at least 2"),
        ((coffee, "da", 2), "da holds 1 image(s): give at least 2"),
        (([coffee, short],), "descs[1] has 95 rows but its grid is 8 x 12 (needs 96)"),
        ((short, "d1"), "d1 has 95 rows but its grid is 8 x 12 (needs 96)"),
        (([dataclasses.replace(coffee, descs=coffee.descs.numpy())],),
         "descs[0] must be ImageDescriptors with a T x D descs tensor"),
        (([coffee, dataclasses.replace(coffee, descs=coffee.descs.flatten())],),
         "descs[1] must be ImageDescriptors with a T x D descs tensor"),
        (([coffee.descs],), "descs[0] must be ImageDescriptors"),               # a bare tensor is no set
        ((coffee.descs, "d2"), "d2 must be ImageDescriptors or a list of them, not Tensor"),
        ((None,), "descs must be ImageDescriptors or a list of them, not NoneType"),
        (([coffee, dataclasses.replace(coffee, descs=coffee.descs[:, :100])],),
         "descriptors have different dimensions [100, 384]: all must have the same dimension D"),
    ]
    for args, sentence in cases:
        with pytest.raises(ParameterError, match=re.escape(sentence)):
            check_descriptor_set(*args)


# --------------------------------------------------------------------------------- DescriptorSettings
def test_resolve_fills_the_model_defaults():
    # DINOv2: token facet, no binning; DINO v1: the paper's key facet and log-binning; stride half the patch
    assert DescriptorSettings().resolve(BUNDLED) == DescriptorSettings(facet="token", stride=7, bin=False)
    assert DescriptorSettings(bin=None).resolve(DINO_V1) == DescriptorSettings(facet="key", stride=4, bin=True)
    given = DescriptorSettings(facet="value", stride=8, bin=False).resolve(DINO_V1)   # False is not "unset"
    assert (given.facet, given.stride, given.bin) == ("value", 8, False)
    assert DescriptorSettings(bin=1).resolve(BUNDLED).bin is True


@pytest.mark.parametrize("settings,sentence", [
    (DescriptorSettings(layer=12), "layer=12 is out of range for dinov2_vits14_imgfocus (12 blocks): expected 0..11"),
    (DescriptorSettings(layer=(3, -1)), "layer=-1 is out of range"),
    (DescriptorSettings(layer=()), "layer: give at least one layer"),
    (DescriptorSettings(facet="attn"), "facet='attn' is unknown: expected one of key, query, value, token"),
    (DescriptorSettings(stride=4), "stride=4 must divide the patch size 14 of dinov2_vits14_imgfocus: "
                                   "choose one of [1, 2, 7, 14]"),
    (DescriptorSettings(stride=0), "stride=0 must divide the patch size 14"),
    (DescriptorSettings(stride=7.0), "stride=7.0 must divide the patch size 14"),
])
def test_check_names_the_setting_the_model_cannot_take(settings, sentence):
    with pytest.raises(ParameterError, match=re.escape(sentence)):
        settings.check(BUNDLED)


def test_check_accepts_what_the_model_takes():
    for s in (DescriptorSettings(), DescriptorSettings(layer=(0, 11), facet="key", stride=14),
              DescriptorSettings(layer=np.int64(5), stride=np.int64(2))):
        s.check(BUNDLED)
    with pytest.raises(ParameterError, match=re.escape("choose one of [1, 2, 4, 8]")):
        DescriptorSettings(stride=3).check(DINO_V1)


def test_layers_is_always_a_list():
    assert DescriptorSettings(layer=11).layers == [11]
    assert DescriptorSettings(layer=(9, 11)).layers == [9, 11]


def test_for_task_reads_the_model_family_row():
    # README "Co-segmentation and parts on real sets": layer 9 measured on DINOv2; DINO v1 keeps the paper's 11
    assert DescriptorSettings.for_task("cosegmentation", "dinov2_vits14_imgfocus").layer == 9
    assert DescriptorSettings.for_task("cosegmentation", "dino_vits8").layer == 11
    # None overrides are ignored, False is kept: the paper's correspondences bin unless told not to
    corr = DescriptorSettings.for_task("correspondences", "dino_vits8", layer=None, bin=False)
    assert corr.layer == 9 and corr.bin is False
    assert DescriptorSettings.for_task("correspondences", "dino_vits8").resolve(DINO_V1).bin is True
    several = DescriptorSettings.for_task("pca", None, layer=[9, 11])
    assert several == DescriptorSettings(layer=(9, 11)) and len({several, DescriptorSettings(layer=(9, 11))}) == 1


def test_for_model_resolves_and_checks():
    assert DescriptorSettings.for_model("parts", BUNDLED) == DescriptorSettings(
        layer=9, facet="token", stride=7, load_size=224, bin=False, hierarchy=2)
    # the paper's correspondences on DINO ViT-S/8: layer 9 keys, stride 4, log-binned
    assert DescriptorSettings.for_model("correspondences", DINO_V1) == DescriptorSettings(
        layer=9, facet="key", stride=4, load_size=224, bin=True)
    with pytest.raises(ParameterError, match="stride=5 must divide the patch size 14"):
        DescriptorSettings.for_model("pca", BUNDLED, stride=5)
    with pytest.raises(ParameterError, match="layer=12 is out of range"):
        DescriptorSettings.for_model("pca", BUNDLED, layer=[9, 12])


def test_kwargs_drive_a_real_extraction(bundled_extractor, coffee, photos):
    s = DescriptorSettings.for_model("pca", BUNDLED, layer=(10, 11), stride=14, load_size=112)
    kw = s.kwargs()
    assert kw == dict(layer=[10, 11], facet="token", stride=14, load_size=112, bin=False, hierarchy=2)
    [d] = bundled_extractor.extract(photos["coffee"], **kw)
    assert d.grid == (8, 12) and d.descs.shape == (96, 2 * 384)              # two layers along D
    assert {k: d.params[k] for k in kw} == kw
    torch.testing.assert_close(d.descs[:, 384:], coffee.descs)               # the same layer 11 tokens
    assert s.replace(load_size=56).load_size == 56 and s.load_size == 112


def test_descriptor_knobs_are_the_settings_and_extract_parameters():
    fields = [f.name for f in dataclasses.fields(DescriptorSettings)]
    assert list(DESCRIPTOR_KNOBS) == fields == list(DescriptorSettings().kwargs())
    assert set(DESCRIPTOR_KNOBS) <= set(inspect.signature(Extractor.extract).parameters)


def test_every_facet_extracts_its_own_descriptors(bundled_extractor, photos):
    out = {}
    for facet in FACETS:
        DescriptorSettings(facet=facet).check(BUNDLED)
        [d] = bundled_extractor.extract(photos["coffee"], layer=11, facet=facet, stride=14, load_size=56)
        assert d.descs.shape == (4 * 6, 384) and d.params["facet"] == facet   # 56 x 84 pixels: a 4 x 6 grid
        out[facet] = d.descs
    for i, a in enumerate(FACETS):
        for b in FACETS[i + 1:]:
            assert not torch.allclose(out[a], out[b]), (a, b)
