"""Evaluation metrics on hand-made cases with answers worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from vitdense.errors import ParameterError
from vitdense.eval.metrics import ari, jaccard, nmi, pck, pixel_accuracy, precision


@pytest.fixture(scope="module")
def left_half():
    m = np.zeros((4, 6), bool)
    m[:, :3] = True
    return m


def test_jaccard_by_hand(left_half):
    assert jaccard(left_half, left_half) == 1.0
    assert jaccard(left_half, ~left_half) == 0.0
    shifted = np.zeros((4, 6), bool)
    shifted[:, 1:4] = True                  # overlap 2 columns, union 4 columns
    assert jaccard(left_half, shifted) == pytest.approx(2 / 4)
    top = np.zeros((4, 6), bool)
    top[:2] = True                          # overlap 6 px, union 12 + 12 - 6 = 18 px
    assert jaccard(left_half, top) == pytest.approx(6 / 18)
    assert jaccard(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0       # both empty
    assert jaccard(left_half.astype(np.uint8) * 255, left_half) == 1.0  # 0/255 masks


def test_precision_is_pixel_accuracy(left_half):
    assert precision(left_half, left_half) == 1.0
    assert precision(left_half, ~left_half) == 0.0
    top = np.zeros((4, 6), bool)
    top[:2] = True
    # agree on 6 fg (top-left) + 6 bg (bottom-right) of 24 pixels
    assert precision(left_half, top) == pytest.approx(12 / 24)
    empty = np.zeros((4, 6), bool)
    assert precision(empty, left_half) == pytest.approx(0.5)   # all-bg prediction: bg is right
    assert pixel_accuracy is precision


def test_mask_validation(left_half):
    with pytest.raises(ParameterError, match="shape"):
        jaccard(left_half, left_half[:, :5])
    with pytest.raises(ParameterError, match="NaN"):
        precision(np.full((4, 6), np.nan), left_half)
    with pytest.raises(ParameterError, match="dtype"):
        jaccard(np.array(["a"]), np.array(["b"]))


def test_nmi_ari_by_hand():
    gt = np.array([0, 0, 1, 1, 2, 2])
    renamed = np.array([5, 5, 7, 7, 9, 9])           # same partition, other names
    assert nmi(renamed, gt) == pytest.approx(1.0)
    assert ari(renamed, gt) == pytest.approx(1.0)
    one = np.zeros(6, int)
    assert nmi(one, gt) == pytest.approx(0.0)
    assert ari(one, gt) == pytest.approx(0.0)
    # pred {0,1}{2,3,4,5} vs gt {0,1}{2,3}{4,5}: I = log 3 - (2/3) log 2, H(gt) = log 3,
    # H(pred) = log 3 - (2/3) log 2; arithmetic NMI = 2 I / (H(gt) + H(pred))
    pred = np.array([0, 0, 1, 1, 1, 1])
    i = np.log(3) - 2 / 3 * np.log(2)
    assert nmi(pred, gt) == pytest.approx(2 * i / (np.log(3) + i))
    # ARI by hand: sum C(n_ij,2) = 3, sum C(a_i,2) = 1 + 6 = 7, sum C(b_j,2) = 3, C(6,2) = 15
    expected = 7 * 3 / 15
    assert ari(pred, gt) == pytest.approx((3 - expected) / ((7 + 3) / 2 - expected))


def test_ignore_and_mask():
    gt = np.array([[0, 1, 1], [0, 2, 2]])         # 0 = background
    pred = np.array([[3, 1, 1], [1, 2, 2]])       # wrong only on the background
    assert nmi(pred, gt, ignore=0) == pytest.approx(1.0)
    assert ari(pred, gt, ignore=[0]) == pytest.approx(1.0)
    assert ari(pred, gt) < 1.0
    assert nmi(pred, gt, mask=gt > 0) == pytest.approx(1.0)
    with pytest.raises(ParameterError, match="no labelled"):
        nmi(pred, gt, ignore=[0, 1, 2])
    with pytest.raises(ParameterError, match="shape"):
        ari(pred, gt[:, :2])


def test_pck_thresholds_by_hand():
    gt = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0]])
    pred = gt + np.array([[0.0, 0.0], [6.0, 8.0], [6.0, 8.01], [30.0, 0.0]])  # 0, 10, >10, 30 px
    bbox = (0, 0, 100, 50)                        # max side 100 -> threshold 0.1 * 100 = 10 px
    assert pck(pred, gt, 0.1, bbox=bbox) == pytest.approx(2 / 4)   # exactly 10 px is correct
    assert pck(pred, gt, 0.3, bbox=bbox) == pytest.approx(4 / 4)
    assert pck(pred, gt, 0.05, bbox=bbox) == pytest.approx(1 / 4)
    # image reference: max side of (H, W) = 200 -> 0.05 * 200 = 10 px
    assert pck(pred, gt, 0.05, reference="image", image_size=(120, 200)) == pytest.approx(2 / 4)
    # unlabelled ground truth (NaN) is skipped; a NaN prediction is wrong
    gt_nan = gt.copy()
    gt_nan[3] = np.nan
    assert pck(pred, gt_nan, 0.1, bbox=bbox) == pytest.approx(2 / 3)
    pred_nan = pred.copy()
    pred_nan[0] = np.nan
    assert pck(pred_nan, gt, 0.1, bbox=bbox) == pytest.approx(1 / 4)


def test_pck_validation():
    p = np.zeros((3, 2))
    with pytest.raises(ParameterError, match="bbox"):
        pck(p, p, 0.1)
    with pytest.raises(ParameterError, match="image_size"):
        pck(p, p, 0.1, reference="image")
    with pytest.raises(ParameterError, match="reference"):
        pck(p, p, 0.1, reference="box", bbox=(0, 0, 1, 1))
    with pytest.raises(ParameterError, match="alpha"):
        pck(p, p, 0.0, bbox=(0, 0, 1, 1))
    with pytest.raises(ParameterError, match="K x 2"):
        pck(p, np.zeros((2, 2)), 0.1, bbox=(0, 0, 1, 1))
    with pytest.raises(ParameterError, match="positive"):
        pck(p, p, 0.1, bbox=(5, 5, 5, 5))
    with pytest.raises(ParameterError, match="labelled"):
        pck(p, np.full((3, 2), np.nan), 0.1, bbox=(0, 0, 1, 1))
