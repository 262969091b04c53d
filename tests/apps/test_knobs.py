"""The applications' knobs as one frozen dataclass (vitdense/apps/knobs.py): resolved from the defaults
table per model, unknown names refused in one sentence, the keyword wrappers' signatures generated
from the fields, the wrapper and the core giving the same result on real photos; and the command
line's one point order (--yx Y X on similarity and transfer, the old --point kept as an alias)."""
from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest

from vitdense.apps.cosegmentation import CosegKnobs, cosegment, cosegment_descriptors, cosegment_with
from vitdense.apps.knobs import settings_for
from vitdense.apps.parts import PartsKnobs, part_cosegment, part_cosegment_descriptors, part_cosegment_with
from vitdense.cli.main import main
from vitdense.defaults import task_defaults
from vitdense.errors import ParameterError
from tests import REPO

FELINES = sorted((REPO / "bench/data/coseg_sets/felines_5/images").glob("*.jpg"))[:3]
CATS = sorted((REPO / "assets/cats").glob("*.jpg"))
MODEL = ["--model", "dinov2_vits14_imgfocus", "--device", "cpu"]


@pytest.mark.parametrize("cls", [CosegKnobs, PartsKnobs])
def test_resolved_fills_every_none_from_the_table_per_model(cls):
    for model in ("dinov2_vits14_imgfocus", "dino_vits8"):
        table = task_defaults(cls.TASK, model)
        k = cls().resolved(model)
        for f in dataclasses.fields(cls):
            want = table[f.name] if f.name in table else f.default
            assert getattr(k, f.name) == want, (model, f.name)
    assert CosegKnobs().resolved("dinov2_vits14_imgfocus").vote_mode == "present"
    assert CosegKnobs().resolved("dino_vits8").vote_mode == "all"
    assert CosegKnobs(vote_mode="all").resolved("dinov2_vits14_imgfocus").vote_mode == "all"   # given wins


def test_unknown_knob_is_refused_in_one_sentence(bundled_extractor):
    with pytest.raises(ParameterError, match=r"^unknown cosegmentation option\(s\) elbo: expected some of elbow, ")\
            as err:
        cosegment(bundled_extractor, FELINES, elbo=0.9)
    assert "\n" not in str(err.value)
    with pytest.raises(ParameterError, match=r"unknown parts option\(s\) batch_size"):
        part_cosegment_descriptors([], batch_size=4)          # an extraction knob: not at descriptor level
    with pytest.raises(ParameterError, match="unknown parts option"):
        PartsKnobs.from_options(num_part=3)


def test_wrapper_signatures_are_the_fields():
    for wrapper, cls, level in ((cosegment, CosegKnobs, "names"), (part_cosegment, PartsKnobs, "names"),
                                (cosegment_descriptors, CosegKnobs, "descriptor_names"),
                                (part_cosegment_descriptors, PartsKnobs, "descriptor_names")):
        params = inspect.signature(wrapper).parameters
        for name in getattr(cls, level)():
            assert params[name].default == cls.__dataclass_fields__[name].default, (wrapper.__name__, name)
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(cosegment).parameters["load_size"].default == task_defaults("cosegmentation")["load_size"]
    assert "batch_size" not in inspect.signature(cosegment_descriptors).parameters


def _same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_wrapper_and_core_agree_on_real_photos(bundled_extractor):
    ex = bundled_extractor
    settings = settings_for("cosegmentation", ex).replace(load_size=112)
    core = cosegment_with(ex, FELINES, settings, CosegKnobs(votes_percentage=60))
    wrapped = cosegment(ex, FELINES, load_size=112, votes_percentage=60)
    _same(core.masks, wrapped.masks)
    assert core.params == wrapped.params and core.params["votes_percentage"] == 60
    assert core.params["descriptors"]["layer"] == [task_defaults("cosegmentation", ex.model_name)["layer"]]
    assert any(m.any() for m in core.masks)
    settings = settings_for("parts", ex).replace(load_size=112)
    core = part_cosegment_with(ex, FELINES, settings, PartsKnobs(num_parts=3, crf=False))
    wrapped = part_cosegment(ex, FELINES, load_size=112, num_parts=3, crf=False)
    _same(core.part_maps, wrapped.part_maps)
    assert core.params == wrapped.params and core.num_parts == 3


def test_similarity_yx_and_old_point_give_the_same_query(tmp_path, capsys):
    a, b = str(CATS[0]), str(CATS[1])
    outs = {}
    for flag in ("--yx", "--point"):
        out = tmp_path / flag.strip("-")
        assert main(["similarity", a, b, flag, "60", "90", "--load-size", "112", "--out", str(out), *MODEL]) == 0
        outs[flag] = json.loads((out / "similarity.json").read_text())
        err = capsys.readouterr().err
        assert "deprecated" not in err          # --point was always Y X here: an alias
    assert outs["--yx"]["query_point"] == outs["--point"]["query_point"] == [60.0, 90.0]
    assert outs["--yx"]["top_b"] == outs["--point"]["top_b"]


def test_transfer_yx_and_old_point_xy_give_the_same_points(tmp_path, capsys):
    root = tmp_path / "sets" / "cats"
    root.mkdir(parents=True)
    for p in CATS[:2]:
        (root / p.name).write_bytes(p.read_bytes())
    res = {}
    for name, points in (("yx", ["--yx", "60", "90", "--yx", "100", "40"]),
                         ("point", ["--point", "90", "60", "--point", "40", "100"])):
        out = tmp_path / name
        argv = ["transfer", str(root), "--source", CATS[0].name, *points, "--load-size", "112", "--out", str(out),
                "--quiet", *MODEL]
        assert main(argv) == 0
        res[name] = json.loads((out / "cats" / "points.json").read_text())
        err = capsys.readouterr().err
        assert err.count("--point X Y is deprecated") == (name == "point")   # one sentence, however many
    assert res["yx"]["points"] == res["point"]["points"]
    assert [(p["source"]["y"], p["source"]["x"]) for p in res["yx"]["points"]] == [(60.0, 90.0), (100.0, 40.0)]
