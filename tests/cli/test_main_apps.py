"""The application subcommands of the ``vitdense`` CLI on small real image sets (bundled model)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitdense.cli.main import main
from tests import REPO

MODEL = ["--model", "dinov2_vits14_imgfocus", "--device", "cpu", "--load-size", "112", "--quiet"]


def _save(arr: np.ndarray, path: Path, size: tuple[int, int]) -> None:
    Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS).save(path)


@pytest.fixture(scope="module")
def roots(photos, tmp_path_factory) -> dict[str, Path]:
    """ROOT folders written once: sets (a good set + a set with an unreadable image), pairs (a good
    pair + a folder of 3 images), and a video."""
    base = tmp_path_factory.mktemp("cli")
    cat = photos["chelsea"]
    sets = base / "sets"
    (sets / "cats").mkdir(parents=True)
    _save(cat, sets / "cats" / "a.jpg", (160, 106))
    _save(cat[:, ::-1], sets / "cats" / "b.png", (160, 106))
    _save(cat[20:280, 60:420], sets / "cats" / "c.png", (150, 108))
    (sets / "broken").mkdir()
    _save(cat, sets / "broken" / "ok.png", (160, 106))
    (sets / "broken" / "bad.png").write_bytes(b"definitely not a PNG file")
    pairs = base / "pairs"
    (pairs / "pair1").mkdir(parents=True)
    _save(cat, pairs / "pair1" / "left.png", (160, 106))
    _save(cat[30:, 40:][:, ::-1], pairs / "pair1" / "right.png", (150, 106))
    (pairs / "three").mkdir()
    for i in range(3):
        _save(cat, pairs / "three" / f"{i}.png", (120, 80))
    from vitdense.apps.video import write_video
    pan = [np.asarray(Image.fromarray(cat[:, 10 * i:10 * i + 380]).resize((160, 106), Image.Resampling.LANCZOS))
           for i in range(8)]                                      # a real pan over the photo
    video = write_video(pan, base / "clip.mp4", fps=8)
    return {"base": base, "sets": sets, "pairs": pairs, "video": video}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_cosegment_skips_failed_set(roots, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["cosegment", str(roots["sets"]), "--out", str(out), *MODEL, "--no-refine"])
    err = capsys.readouterr().err
    assert rc == 1                                                   # some set failed
    lines = [ln for ln in err.splitlines() if "broken" in ln and "error" in ln]
    assert len(lines) == 1 and "bad.png" in lines[0]
    assert "Traceback" not in err
    summary = _json(out / "summary.json")
    assert summary["failed"] == ["broken"] and summary["sets"]["cats"] == "ok"
    res = _json(out / "cats" / "result.json")
    assert [r["file"] for r in res["images"]] == ["a.jpg", "b.png", "c.png"]
    assert res["params"]["refine"] is False and res["params"]["descriptors"]["load_size"] == 112
    assert res["params"]["descriptors"]["stride"] == 7                # model-aware default stride
    assert res["num_clusters"] >= 1 and len(res["votes"]) == res["num_clusters"]
    for row in res["images"]:
        mask = np.asarray(Image.open(out / "cats" / row["mask"]))
        assert set(np.unique(mask)) <= {0, 255}
        assert mask.shape == np.asarray(Image.open(roots["sets"] / "cats" / row["file"])).shape[:2]
        assert abs((mask > 0).mean() - row["foreground_fraction"]) < 1e-9
        assert 0.2 < row["foreground_fraction"] < 1.0                # the cat fills most of each image
        assert (out / "cats" / row["overlay"]).is_file() and (out / "cats" / row["cutout"]).is_file()
    assert not (out / "broken").exists()


def test_parts_single_set_folder(roots, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["parts", str(roots["sets"] / "cats"), "--out", str(out), *MODEL, "--num-parts", "3",
               "--crf-iterations", "5"])
    assert rc == 0, capsys.readouterr().err
    res = _json(out / "cats" / "result.json")
    k = res["num_parts"]
    assert 1 <= k <= 3 and res["params"]["num_parts"] == 3
    assert res["params"]["crf_params"]["iterations"] == 5 and res["crf_applied"] is True
    seen = set()
    for row in res["images"]:
        lab = np.asarray(Image.open(out / "cats" / row["parts"]))
        assert lab.dtype == np.uint8 and set(np.unique(lab)) <= set(range(k + 1))
        seen |= set(np.unique(lab).tolist())
        color = np.asarray(Image.open(out / "cats" / row["parts_color"]))
        assert color.shape == lab.shape + (4,)
        assert (color[..., 3][lab == 0] == 0).all()                    # background transparent
        for p in range(1, k + 1):                                       # part p: its palette colour
            if (lab == p).any():
                assert (color[lab == p][:, :3] == res["part_colors"][p - 1]).all()
        assert np.allclose(row["part_fractions"], [(lab == p).mean() for p in range(1, k + 1)], atol=1e-4)
    assert seen - {0}                                                   # some part somewhere


def test_correspond_pairs_and_bad_pair(roots, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["correspond", str(roots["pairs"]), "--out", str(out), *MODEL, "--num-pairs", "5"])
    err = capsys.readouterr().err
    assert rc == 1
    assert any("three" in ln and "exactly 2 images, found 3" in ln for ln in err.splitlines())
    pts = _json(out / "pair1" / "points.json")
    assert pts["image1"] == "left.png" and pts["image2"] == "right.png"
    assert 1 <= len(pts["pairs"]) <= 5 and len(pts["points1"]) == len(pts["pairs"])
    assert pts["params"]["layer"] == [7] and pts["params"]["bin"] is False  # the bundled DINOv2 default
    assert pts["params"]["flip"] is True                                     # ... with test-time mirroring
    for pair in pts["pairs"]:
        (y1, x1), (y2, x2) = pair["point1"], pair["point2"]
        assert 0 <= y1 < 106 and 0 <= x1 < 160 and 0 <= y2 < 106 and 0 <= x2 < 150
        assert -1.0 <= pair["similarity"] <= 1.0 and pair["saliency"] > 0.05
    canvas = np.asarray(Image.open(out / "pair1" / "correspondences.png"))
    assert canvas.shape == (106, 160 + 10 + 150, 3)
    assert (out / "pair1" / "left_points.png").is_file() and (out / "pair1" / "right_points.png").is_file()
    assert _json(out / "summary.json")["failed"] == ["three"]


def test_every_library_knob_is_an_option(roots, tmp_path, capsys):
    """--no-flip reaches find_correspondences (the result records it); --refiner is offered and checked."""
    out = tmp_path / "out"
    assert main(["correspondences", str(roots["pairs"] / "pair1"), "--out", str(out), *MODEL, "--no-flip"]) == 0
    assert _json(out / "pair1" / "points.json")["params"]["flip"] is False
    assert _json(out / "pair1" / "params.json")["flip"] is False
    with pytest.raises(SystemExit) as err:
        main(["cosegmentation", str(roots["sets"]), "--out", str(out), "--refiner", "gpu"])
    assert err.value.code == 2 and "invalid choice: 'gpu'" in capsys.readouterr().err


def test_similarity_point_and_user_error(roots, tmp_path, capsys):
    a = roots["sets"] / "cats" / "a.jpg"
    b = roots["sets"] / "cats" / "b.png"
    out = tmp_path / "sim"
    rc = main(["similarity", str(a), str(b), "--point", "50", "60", "--top-n", "2", "--out", str(out),
               "--no-refine", *MODEL])                               # the paper's cell rule
    stdout = capsys.readouterr().out
    assert rc == 0
    printed = json.loads(stdout.strip().splitlines()[-1])
    saved = _json(out / "similarity.json")
    qy, qx = saved["query_cell_point"]
    assert abs(qy - 50) < 7 and abs(qx - 60) < 7
    assert saved["top_a"][0]["point"] == [qy, qx] and saved["top_a"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert len(saved["top_b"]) == 2 and printed["top_b"] == saved["top_b"]
    # b is a mirror image of a (rows unchanged): the match (an eye, left or right) is at the same height
    assert abs(saved["top_b"][0]["point"][0] - qy) < 15
    assert saved["top_b"][0]["similarity"] >= saved["top_b"][1]["similarity"] > 0.5
    assert saved["match_b"] == saved["top_b"][0]["point"]                # unrefined: the best cell
    rc = main(["similarity", str(a), str(b), "--point", "50", "60", "--out", str(out / "refined"), *MODEL])
    refined = _json(out / "refined" / "similarity.json")
    assert rc == 0 and refined["params"]["refine"] is True               # the default, as clicks
    assert abs(refined["match_b"][0] - qy) < 15 and refined["match_b"] != saved["match_b"]
    for name in ("similarity_a.png", "similarity_b.png"):
        assert np.asarray(Image.open(out / name)).shape == (106, 160, 3)
    rc = main(["similarity", str(a), "--point", "500", "10", *MODEL])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().startswith("error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_pca_subprocess_with_bad_set(roots, tmp_path):
    """One real ``python -m vitdense`` run: exit status 1, one line per failed set, files written."""
    out = tmp_path / "pca"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "vitdense", "pca", str(roots["sets"]), "--out", str(out),
                           *MODEL, "--n-components", "3"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == \
        [ln for ln in proc.stderr.splitlines() if "broken" in ln]
    assert "1 of 2 set(s) done" in proc.stdout
    res = _json(out / "cats" / "pca.json")
    ratio = res["explained_variance_ratio"]
    assert len(ratio) == 3 and all(r1 >= r2 for r1, r2 in zip(ratio, ratio[1:])) and sum(ratio) <= 1.0
    for row in res["images"]:
        rgb = np.asarray(Image.open(out / "cats" / row["pca"]))
        assert rgb.shape[2] == 3 and rgb.std() > 5
        assert len(row["components"]) == 3


def test_video_command(roots, tmp_path, capsys):
    out = tmp_path / "vid"
    rc = main(["video", str(roots["video"]), "--out", str(out), *MODEL, "--num-sampled-frames", "3",
               "--num-parts", "2", "--format", "gif", "--temporal-smoothing", "0.5"])
    assert rc == 0, capsys.readouterr().err
    res = _json(out / "clip" / "result.json")
    assert res["num_frames"] == 8 and res["sampled_indices"] == [0, 4, 7] and res["fps"] == pytest.approx(8.0)
    assert res["params"]["temporal_smoothing"] == 0.5 and res["params"]["parts"]["num_parts"] == 2
    assert len(res["labels"]) == 8
    lab = np.asarray(Image.open(out / "clip" / res["labels"][3]))
    assert lab.shape == (106, 160) and lab.max() <= res["num_parts"]
    from vitdense.apps.video import read_video
    frames, fps = read_video(out / "clip" / res["video"])
    assert len(frames) == 8 and frames[0].shape == (106, 160, 3)


def test_usage_errors_exit_2(roots, tmp_path, capsys):
    assert main(["cosegment", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *MODEL]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["parts", str(roots["sets"]), "--out", str(tmp_path / "o"), *MODEL, "--hierarchy", "3"]) == 2
    assert "--hierarchy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cosegment", "--help"])
    assert "Exit status: 0 when every set succeeded; 1 when some set failed" in " ".join(
        capsys.readouterr().out.split())


def test_shared_writers_give_strict_json_and_unique_stems(tmp_path):
    """vitdense.export (used by the CLI and the web demo): no bare NaN / Infinity in JSON files,
    file stems that stay apart."""
    import io

    from vitdense.export import png_bytes, save_png, to_jsonable, unique_stems, write_json
    value = {"a": np.float32(np.nan), "b": [1.5, float("inf")], 3: np.arange(2), "p": Path("x/y.png")}
    assert to_jsonable(value) == {"a": None, "b": [1.5, None], "3": [0, 1], "p": str(Path("x/y.png"))}
    write_json(value, tmp_path / "sub" / "v.json")
    text = (tmp_path / "sub" / "v.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and json.loads(text)["b"] == [1.5, None]
    assert unique_stems([Path("d/a.jpg"), Path("d/a.png"), Path("d/b.png")]) == ["a_jpg", "a_png", "b"]
    assert unique_stems(["cat.jpg", "cat.jpg", ""], numbered=True) == ["01_cat", "02_cat", "03_image"]
    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    assert save_png(img, tmp_path / "i.png") == "i.png"
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "i.png")), img)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(img)))), img)
