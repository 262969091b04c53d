"""The application registry (vitdense/registry.py, entries in vitdense/apps.py): its knobs are the
library's keywords, its defaults are the defaults table's (the CLI follows a change of the table),
the CLI's commands are the registry's, and one export is written alike as a folder and as a zip."""
from __future__ import annotations

import argparse
import inspect
import zipfile

import numpy as np
import pytest

from vitdense import defaults
from vitdense.apps import APPS
from vitdense.cli.main import app_options, build_parser
from vitdense.export import write_entries, zip_entries


def test_every_knob_is_a_keyword_of_the_function_it_goes_to():
    for app in APPS.values():
        for knob in app.knobs:
            funcs = {"run": [app.run, *app.delegates], "read": [app.reader], "export": [app.export]}[knob.stage]
            assert any(f is not None and knob.name in inspect.signature(f).parameters for f in funcs), \
                (app.id, knob.name)
            app.default(knob.name)                      # every knob has a default somewhere
        assert app.task in defaults.TASK_DEFAULTS, app.id


#: keywords of an application's functions that are its inputs (the command line has its own
#: options for them: ``similarity A B --yx Y X``), not knobs
INPUT_KEYWORDS = {"similarity": {"image_b", "point"}}


def test_every_keyword_of_an_application_is_a_knob():
    """What the library takes, the command line offers: every keyword with a default of an
    application's functions is a knob or a descriptor setting of its entry."""
    for app in APPS.values():
        names = {k.name for k in app.knobs} | set(app.descriptor_knobs) | INPUT_KEYWORDS.get(app.id, set())
        for f in (app.run, *app.delegates):
            taken = [n for n, p in inspect.signature(f).parameters.items()
                     if p.default is not inspect.Parameter.empty]
            assert set(taken) <= names, (app.id, f.__name__, sorted(set(taken) - names))


def test_help_shows_every_measured_family_default():
    """``vitdense <id> --help`` gives the paper's default and each family's override (the table's
    rows), so a DINOv2 user reads what will run."""
    from vitdense.cli.main import _shown
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    seen = 0
    for app in APPS.values():
        helps = {o: a.help for a in sub.choices[app.id]._actions for o in a.option_strings}
        for (task, family), values in defaults.FAMILY_DEFAULTS.items():
            for name, value in values.items() if task == app.task else ():
                flag = "--" + name.replace("_", "-")
                assert flag in helps, (app.id, flag)
                assert f"; {family} models: {_shown(value)})" in helps[flag], (app.id, helps[flag])
                seen += 1
    assert seen >= 10
    assert "(default 11; dinov2 models: 9)" in " ".join(sub.choices["cosegmentation"].format_help().split())


def test_cli_commands_are_the_registry():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(APPS) <= set(sub.choices) and {"extract", "models"} <= set(sub.choices)
    for app_id, app in APPS.items():
        flags = {o for a in sub.choices[app_id]._actions for o in a.option_strings}
        assert {k.flag for k in app.knobs if k.kind != "crf"} <= flags, app_id


def test_defaults_follow_the_table_per_model(monkeypatch, tmp_path):
    """Changing vitdense/defaults.py changes what the command line runs with, per model family."""
    app = APPS["cosegmentation"]
    parse = build_parser().parse_args
    args = parse(["cosegment", str(tmp_path), "--out", str(tmp_path / "o")])
    assert app_options(app, args, "dinov2_vits14_imgfocus", "run")["elbow"] == \
        defaults.TASK_DEFAULTS["cosegmentation"]["elbow"]
    monkeypatch.setitem(defaults.TASK_DEFAULTS["cosegmentation"], "elbow", 0.91)
    monkeypatch.setitem(defaults.FAMILY_DEFAULTS, ("cosegmentation", "dinov2"), {"thresh": 0.2, "layer": 10})
    dinov2 = app_options(app, args, "dinov2_vits14_imgfocus", "run")
    dino = app_options(app, args, "dino_vits8", "run")
    assert dinov2["elbow"] == dino["elbow"] == 0.91
    assert (dinov2["thresh"], dinov2["layer"]) == (0.2, 10)
    assert (dino["thresh"], dino["layer"]) == (0.065, 11)
    given = parse(["cosegment", str(tmp_path), "--out", "o", "--thresh", "0.3", "--layer", "8", "--no-refine"])
    opts = app_options(app, given, "dinov2_vits14_imgfocus", "run")
    assert (opts["thresh"], opts["layer"], opts["refine"]) == (0.3, 8, False)   # given options win
    # a knob outside the table takes the library's signature default
    assert opts["max_clusters"] == inspect.signature(app.run).parameters["max_clusters"].default


def test_old_application_ids_still_work(tmp_path):
    """app id = tab id = run API name; the old ids stay a command alias and a get_app alias (deprecated)."""
    from vitdense.apps import get_app
    from vitdense.apps.registry import APP_ALIASES
    for old, new in APP_ALIASES.items():
        with pytest.warns(DeprecationWarning, match=f"{old!r} is deprecated"):
            assert get_app(old) is APPS[new]
        assert build_parser().parse_args([old, str(tmp_path), "--out", "o"]).func is not None
    assert all(app.api_names[0] == app.id for app in APPS.values())
    help_text = build_parser().format_help()
    assert "cosegmentation (cosegment)" in help_text and help_text.count("cosegment") == 2


def test_every_tab_derives_from_its_registry_entry():
    """Each tab's title, id, knob controls (in order), API names and run parameters are its entry's."""
    import gradio as gr

    from vitdense.web import build_demo
    from vitdense.web.tabs import TABS
    demo = build_demo(online=False)
    tabs = {b.id: b for b in demo.blocks.values() if isinstance(b, gr.Tab)}
    api = demo.get_api_info()["named_endpoints"]

    def inside(block):
        for child in getattr(block, "children", []):
            yield child
            yield from inside(child)
    for tab in TABS:
        app = tab.APP
        assert (tab.ID, tab.TITLE) == (app.id, app.title) and tabs[app.id].label == app.title
        knobs = [b.knob for b in inside(tabs[app.id]) if getattr(b, "knob", None)]
        assert knobs == [(app.id, n) for n in app.web_knobs], app.id
        fns = [f for f in demo.fns.values() if f.api_name in app.api_names]
        assert {f.api_name for f in fns} == set(app.api_names), app.id
        takes = [[p["parameter_name"] for p in api[f"/{n}"]["parameters"]] for n in app.api_names]
        with_knobs = [[p for p in ps if p in app.web_knobs] for ps in takes]   # each: all of them, in order
        assert all(k in ([], list(app.web_knobs)) for k in with_knobs), app.id
        assert not app.web_knobs or list(app.web_knobs) in with_knobs, app.id
        params = takes[0]
        if app.web_first:                                # right before the descriptor settings
            at = params.index("model")
            assert params[at - len(app.web_first):at] == list(app.web_first), (app.id, params)
        for old, new in app.api_aliases.items():       # deprecated names: the same event, said so
            alias = next(f for f in demo.fns.values() if f.api_name == old)
            run = next(f for f in demo.fns.values() if f.api_name == new)
            assert api[f"/{old}"]["description"].startswith("Deprecated")
            assert (alias.inputs, alias.outputs) == (run.inputs, run.outputs)


def test_hierarchy_only_where_it_is_used(tmp_path):
    args = build_parser().parse_args(["parts", str(tmp_path), "--out", "o", "--hierarchy", "3"])
    with pytest.raises(Exception, match="--hierarchy is not used"):
        app_options(APPS["parts"], args, None, "run")


def test_one_layout_for_folders_and_zips(tmp_path):
    """The same export entries become the same files in an output folder and in a zip."""
    rng = np.random.default_rng(0)
    entries = {"masks/a.png": rng.integers(0, 255, (5, 7), dtype=np.uint8), "result.json": {"x": np.nan},
               "parts.mp4": b"\x00\x01"}
    paths = write_entries(entries, tmp_path / "out")
    z = zip_entries(entries, tmp_path / "r.zip")
    with zipfile.ZipFile(z) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(str(p.relative_to(tmp_path / "out")) for p in paths)
        assert zf.read("result.json") == (tmp_path / "out/result.json").read_bytes() == b'{\n  "x": null\n}\n'
        import io

        from PIL import Image
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(zf.read("masks/a.png")))),
                                      entries["masks/a.png"])

