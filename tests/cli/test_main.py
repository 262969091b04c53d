"""`vitdense extract` and `vitdense models`, in process and as a real subprocess."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image
from safetensors import safe_open

from vitdense.cli.main import main
from vitdense.features.models import MODELS
from tests import REPO


@pytest.fixture(scope="module")
def cat_jpg(tmp_path_factory, photos):
    path = tmp_path_factory.mktemp("img") / "cat.jpg"
    Image.fromarray(photos["chelsea"]).save(path, quality=92)
    return path


def test_extract_writes_descriptors(cat_jpg, tmp_path, capsys):
    out = tmp_path / "d.safetensors"
    code = main(["extract", str(cat_jpg), str(cat_jpg), "--out", str(out), "--model", "dinov2_vits14_imgfocus",
                 "--layer", "9", "--facet", "key", "--stride", "14", "--load-size", "112", "--bin",
                 "--include-cls", "--saliency"])
    assert code == 0
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        grid = json.loads(meta["grid_0"])
        descs = f.get_tensor("descs_1")
        assert descs.shape == (grid[0] * grid[1], 17 * 384)
        assert f.get_tensor("saliency_0").shape == tuple(grid)
        assert f.get_tensor("cls_0").shape == (384,)
    params = json.loads(meta["params"])
    assert params["layer"] == [9] and params["bin"] is True and params["stride"] == 14
    assert grid == [8, 12]  # 112 x 168 at stride 14
    assert "grid 8 x 12" in capsys.readouterr().out
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()   # the usual permissions, not 0600


def _umask() -> int:
    from vitdense.export import current_umask
    return current_umask()


def test_version():
    from vitdense import __version__
    proc = subprocess.run([sys.executable, "-m", "vitdense", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"vitdense {__version__}"

    import tomllib
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__


def test_models_lists_bundled_as_available(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    bundled = next(line for line in lines if line.startswith("dinov2_vits14_imgfocus"))
    assert " yes " in bundled
    assert len(lines) == 1 + len(MODELS)  # a header, then one line per registry entry


@pytest.mark.parametrize("args,message", [
    (["--stride", "4"], "stride=4 must divide the patch size 14"),
    (["--layer", "12"], "layer=12 is out of range"),
    (["--model", "nope"], "unknown model 'nope'"),
])
def test_bad_options_exit_2_without_traceback(cat_jpg, tmp_path, capsys, args, message):
    argv = ["extract", str(cat_jpg), "--out", str(tmp_path / "x.safetensors"), *args]
    if "--model" not in args:
        argv += ["--model", "dinov2_vits14_imgfocus"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_subprocess_bad_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    proc = subprocess.run([sys.executable, "-m", "vitdense", "extract", str(bad), "--out", str(tmp_path / "o"),
                           "--model", "dinov2_vits14_imgfocus"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: bad.png: not a readable image (UnidentifiedImageError)"
    assert "Traceback" not in proc.stderr
