"""Descriptor extraction on the bundled DINOv2 ViT-S/14 and real photographs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitdense.errors import ImageError, ParameterError
from vitdense.features.extractor import Extractor, log_bin, log_bin_tokens


def log_bin_loop(x: torch.Tensor, hierarchy: int) -> torch.Tensor:
    """The official code's nested loops, written plainly: D x h x w -> (1 + 8 h) D x h x w."""
    D, h, w = x.shape
    pools = [torch.nn.AvgPool2d(3 ** k, stride=1, padding=3 ** k // 2, count_include_pad=False)(x[None])[0]
             for k in range(hierarchy)]
    out = torch.zeros(D * (1 + 8 * hierarchy), h, w)
    for y in range(h):
        for xx in range(w):
            part = 0
            for k in range(hierarchy):
                r = 3 ** k
                for i in range(y - r, y + r + 1, r):
                    for j in range(xx - r, xx + r + 1, r):
                        if i == y and j == xx and k != 0:
                            continue
                        ci, cj = min(max(i, 0), h - 1), min(max(j, 0), w - 1)
                        out[part * D:(part + 1) * D, y, xx] = pools[k][:, ci, cj]
                        part += 1
    return out


@pytest.mark.parametrize("hierarchy,shape", [(1, (4, 5, 7)), (2, (3, 6, 9)), (3, (2, 11, 8)), (2, (2, 1, 4))])
def test_log_bin_equals_loop(hierarchy, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(hierarchy))
    fast = log_bin(x[None], hierarchy)[0]
    assert fast.shape == (shape[0] * (1 + 8 * hierarchy), *shape[1:])
    reference = log_bin_loop(x, hierarchy)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
    tokens = log_bin_tokens(x.flatten(1).T, shape[1:], hierarchy)          # T x (1 + 8h) D
    torch.testing.assert_close(tokens, reference.flatten(1).T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size,stride", [((224, 224), 14), ((224, 300), 7), ((150, 97), 7), ((97, 150), 2)])
def test_grid_arithmetic(bundled_extractor, photos, size, stride):
    img = Image.fromarray(photos["coffee"]).resize(size[::-1])
    [d] = bundled_extractor.extract(img, layer=3, facet="value", stride=stride, load_size=None)
    h, w = 1 + (size[0] - 14) // stride, 1 + (size[1] - 14) // stride
    assert d.grid == (h, w)
    assert d.descs.shape == (h * w, 384)
    assert d.geometry.orig_size == size and d.geometry.resized_size == size
    centres = d.geometry.cell_centers()
    assert centres[0].tolist() == [7.0, 7.0]
    assert centres[-1].tolist() == [(h - 1) * stride + 7, (w - 1) * stride + 7]


def test_load_size_resizes_smaller_side(bundled_extractor, photos):
    img = photos["chelsea"]  # 300 x 451
    [d] = bundled_extractor.extract(img, layer=11, stride=7, load_size=224)
    assert d.geometry.resized_size == (224, int(224 * 451 / 300))
    assert d.geometry.orig_size == (300, 451)
    assert d.grid == (1 + (224 - 14) // 7, 1 + (336 - 14) // 7)
    # cell centres map back into the original image
    centres = d.geometry.cell_centers()
    assert centres[:, 0].max() < 300 and centres[:, 1].max() < 451


def test_token_facet_matches_timm(bundled_extractor, photos):
    """The hand-rolled pass (strided conv, pos-embed, blocks) equals timm's own forward."""
    x, _ = bundled_extractor.preprocess(photos["astronaut"], load_size=None, stride=14)
    x = torch.nn.functional.interpolate(x[None], size=(518, 518), mode="bilinear")
    model = bundled_extractor.model
    with torch.inference_mode():
        ref = model.forward_features(x)
        out = model.norm(bundled_extractor.forward(x, [11], "token", stride=14).features[11])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_key_facet_matches_qkv_projection(bundled_extractor, photos):
    x, _ = bundled_extractor.preprocess(photos["coffee"], load_size=112, stride=14)
    captured = {}
    qkv = bundled_extractor.model.blocks[5].attn.qkv
    hook = qkv.register_forward_hook(lambda m, i, o: captured.setdefault("qkv", o))
    try:
        out = bundled_extractor.forward(x[None], [5], "key", stride=14)
    finally:
        hook.remove()
    B, N, _ = captured["qkv"].shape
    key = captured["qkv"].reshape(B, N, 3, 6, 64)[:, :, 1].reshape(B, N, 384)
    torch.testing.assert_close(out.features[5], key)


def test_stops_after_deepest_block(bundled_extractor, photos):
    blocks = bundled_extractor.model.blocks
    calls: list[str] = []
    hooks = [blocks[i].register_forward_hook(lambda m, i_, o, i=i: calls.append(f"block{i}")) for i in (9, 10, 11)]
    hooks.append(blocks[11].attn.qkv.register_forward_hook(lambda *a: calls.append("qkv11")))
    hooks.append(blocks[11].mlp.register_forward_hook(lambda *a: calls.append("mlp11")))
    try:
        bundled_extractor.extract(photos["rocket"], layer=9, facet="key", stride=14, load_size=112)
        assert calls == []  # layer 9's key comes from block 9's qkv; blocks 10 and 11 never run
        bundled_extractor.extract(photos["rocket"], layer=9, facet="key", stride=14, load_size=112,
                                  saliency=True)
        # block 9 runs by hand (its qkv is the descriptor), block 10 whole, block 11 only to q and k
        assert calls == ["block10", "qkv11"]
    finally:
        for h in hooks:
            h.remove()


def test_layers_concatenate_and_cls(bundled_extractor, photos):
    img = photos["coffee"]
    [a] = bundled_extractor.extract(img, layer=[4, 8], facet="query", stride=14, load_size=112, include_cls=True)
    [b4] = bundled_extractor.extract(img, layer=4, facet="query", stride=14, load_size=112, include_cls=True)
    [b8] = bundled_extractor.extract(img, layer=8, facet="query", stride=14, load_size=112)
    torch.testing.assert_close(a.descs, torch.cat([b4.descs, b8.descs], dim=1))
    assert a.cls.shape == (768,) and b4.cls.shape == (384,)
    torch.testing.assert_close(a.cls[:384], b4.cls)


def test_batch_equals_single(bundled_extractor, photos):
    imgs = [photos["coffee"], photos["coffee"][:, ::-1], photos["chelsea"]]
    batch = bundled_extractor.extract(imgs, layer=11, stride=14, load_size=112, bin=True, saliency=True)
    single = [bundled_extractor.extract(im, layer=11, stride=14, load_size=112, bin=True, saliency=True)[0]
              for im in imgs]
    for b, s in zip(batch, single):
        torch.testing.assert_close(b.descs, s.descs, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b.saliency, s.saliency, rtol=1e-4, atol=1e-4)
    assert batch[0].descs.shape[1] == 17 * 384


def test_pipelined_passes_equal_one_batch(bundled_extractor, photos, monkeypatch):
    """Passes of a few images, each prepared while the previous one runs (what CUDA does), give the
    descriptors of one batch (mixed sizes: chunks never mix shapes), in input order."""
    imgs = [photos["coffee"], photos["chelsea"], photos["coffee"][:, ::-1], photos["astronaut"], photos["chelsea"]]
    kw = dict(layer=11, stride=14, load_size=112, saliency=True, batch_size=8)
    one = bundled_extractor.extract(imgs, **kw)
    calls = bundled_extractor.num_forward_calls
    monkeypatch.setattr(bundled_extractor, "pipeline_images", 1)
    piped = bundled_extractor.extract(imgs, **kw)
    assert bundled_extractor.num_forward_calls - calls == len(imgs)      # one pass per image
    for a, b in zip(one, piped):
        assert a.grid == b.grid
        torch.testing.assert_close(b.descs, a.descs, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b.saliency, a.saliency, rtol=1e-4, atol=1e-4)


def test_flip_nearest_neighbour_is_mirrored(bundled_extractor, photos):
    """Salient cells of the cat find their nearest neighbour at the mirrored place in the flipped photo."""
    img = photos["chelsea"]
    assert bundled_extractor.spec.default_facet == "token"  # DINOv2 keys mostly encode position
    d, f = bundled_extractor.extract([img, img[:, ::-1]], layer=9, stride=7, load_size=224, saliency=True)
    a = torch.nn.functional.normalize(d.descs, dim=1)
    b = torch.nn.functional.normalize(f.descs, dim=1)
    cells = torch.nonzero(d.saliency.flatten() > 0.2).squeeze(1)
    assert len(cells) > 20
    nn_idx = (a[cells] @ b.T).argmax(dim=1).numpy()
    src = d.geometry.cell_to_pixel(cells.numpy())
    dst = f.geometry.cell_to_pixel(nn_idx)
    width = img.shape[1]
    err = np.hypot(dst[:, 0] - src[:, 0], dst[:, 1] - (width - src[:, 1]))
    # measured: median 0 px; the key facet gives 207 px (one cell is 7 * 300 / 224 = 9.4 px)
    assert np.median(err) < 10
    assert np.mean(err < 20) > 0.8


def test_saliency_higher_on_object(bundled_extractor, cat_on_bricks):
    image, mask = cat_on_bricks
    [d] = bundled_extractor.extract(image, layer=11, stride=7, load_size=224, saliency=True)
    sal = d.geometry.upsample(d.saliency, "bilinear")
    assert sal.shape == mask.shape
    assert 0.0 <= sal.min() and sal.max() <= 1.0
    # measured: 0.26 on the cat, 0.01 on the bricks
    assert sal[mask].mean() > 5 * sal[~mask].mean()
    assert sal[mask].mean() > 0.1


def test_upsample_nearest_keeps_values(bundled_extractor, photos):
    [d] = bundled_extractor.extract(photos["astronaut"], layer=11, stride=14, load_size=112)
    labels = torch.arange(d.grid[0] * d.grid[1]).reshape(d.grid)
    up = d.geometry.upsample(labels, "nearest")
    assert up.shape == (512, 512) and up.dtype == np.int64
    centres = d.geometry.cell_centers().astype(int)
    assert (up[centres[:, 0], centres[:, 1]] == labels.flatten().numpy()).all()


def test_pixel_to_cell_round_trip(bundled_extractor, photos):
    [d] = bundled_extractor.extract(photos["chelsea"], layer=11, stride=7, load_size=224)
    g = d.geometry
    idx = np.array([0, 17, 300, d.grid[0] * d.grid[1] - 1])
    for i, (y, x) in zip(idx, g.cell_to_pixel(idx)):
        assert g.pixel_to_cell(y, x) == i
    with pytest.raises(ParameterError, match="outside the image"):
        g.pixel_to_cell(-1, 5)
    with pytest.raises(ParameterError, match="outside the image"):
        g.pixel_to_cell(10, 451)


@pytest.mark.parametrize("kwargs,match", [
    (dict(stride=4), "must divide the patch size 14"),
    (dict(layer=12), "layer=12 is out of range"),
    (dict(layer=-1), "out of range"),
    (dict(facet="attn"), "facet='attn' is unknown"),
    (dict(load_size=10), "load_size=10 is out of range"),
    (dict(hierarchy=0, bin=True), "hierarchy=0"),
    (dict(batch_size=0), "batch_size=0"),
])
def test_bad_parameters(bundled_extractor, photos, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        bundled_extractor.extract(photos["coffee"], **kwargs)


def test_image_smaller_than_patch(bundled_extractor):
    with pytest.raises(ImageError, match="smaller than one 14 x 14 patch"):
        bundled_extractor.extract(np.zeros((10, 40, 3), np.uint8), load_size=None)


def test_extreme_aspect_ratio_refused(bundled_extractor):
    with pytest.raises(ImageError, match="aspect ratio too extreme"):
        bundled_extractor.extract(np.zeros((2, 3000, 3), np.uint8), load_size=224, stride=2)


def test_unknown_model_and_device():
    from vitdense.errors import UnknownModelError
    with pytest.raises(UnknownModelError, match="unknown model 'dino_vitx'"):
        Extractor("dino_vitx")
    with pytest.raises(ParameterError, match="fp16 needs a GPU"):
        Extractor("dinov2_vits14_imgfocus", device="cpu", dtype="fp16")


def test_resize_on_the_device_is_close_to_lanczos(bundled_extractor, photos):
    """resize="device" (antialiased bicubic, batched) against the reference LANCZOS: measured on 19
    real photos (skimage's and assets/) at load 224, cosine mean 0.99987, 1st percentile 0.9993, min
    0.9933 (README "GPU"); here two photos of different sizes in one call."""
    imgs = [photos["coffee"], photos["rocket"]]
    kw = dict(layer=11, facet="token", stride=14, load_size=112)
    ref = bundled_extractor.extract(imgs, **kw)
    dev = bundled_extractor.extract(imgs, resize="device", **kw)
    for a, b in zip(ref, dev):
        assert b.geometry == a.geometry and b.params["resize"] == "device" and "resize" not in a.params
        cos = torch.nn.functional.cosine_similarity(a.descs, b.descs, dim=1)
        assert float(cos.mean()) >= 0.9995 and float(cos.min()) >= 0.99
        assert not torch.equal(a.descs, b.descs)  # another filter: not the same pixels
    with pytest.raises(ParameterError, match="resize"):
        bundled_extractor.extract(imgs[0], resize="nearest", **kw)
