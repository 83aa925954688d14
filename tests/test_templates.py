from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk.errors import RenderError
from clerk.roots import Root, RootSet
from clerk.rules.fileinfo import FIELD_SAMPLES
from clerk.rules.templates import (
    Renderer,
    parse_template,
    sanitize_component,
    spec_problem,
    template_fields,
)


@pytest.fixture
def roots(tmp_path: Path) -> RootSet:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return RootSet([Root("in", str(tmp_path / "in")), Root("out", str(tmp_path / "out"))])


def test_fields_and_formats(roots: RootSet, tmp_path: Path) -> None:
    r = Renderer(roots)
    fields = {"name": "a.jpg", "mtime": datetime(2024, 3, 9, 10, 0), "size": 42,
              "exif.camera": "Pixel 8"}  # fmt: skip
    out = r.render_path(str(tmp_path / "out/{mtime:%Y}/{mtime:%m}/{exif.camera}-{size:05d}-{name}"),
                        fields, base_dir=str(tmp_path / "in"))  # fmt: skip
    assert out == str(tmp_path / "out/2024/03/Pixel 8-00042-a.jpg")
    assert template_fields("{a}/{b:%Y}x{c.d}") == ["a", "b", "c.d"]


def test_relative_templates_land_next_to_the_file(roots: RootSet, tmp_path: Path) -> None:
    r = Renderer(roots)
    assert r.render_path("old-{name}", {"name": "x"}, base_dir=str(tmp_path / "in")) == str(
        tmp_path / "in/old-x"
    )


def test_values_are_sanitized(roots: RootSet, tmp_path: Path) -> None:
    r = Renderer(roots)
    out = r.render_path(str(tmp_path / "out/{name}"), {"name": "../../etc/passwd"},
                        base_dir=str(tmp_path))  # fmt: skip
    assert out == str(tmp_path / "out/.._.._etc_passwd")
    assert sanitize_component("..") == "__"
    assert sanitize_component("a\nb\x00c/d") == "a_b_c_d"


def test_outside_every_root_is_refused(roots: RootSet, tmp_path: Path) -> None:
    r = Renderer(roots)
    with pytest.raises(RenderError, match="outside every root"):
        r.render_path("/etc/{name}", {"name": "x"}, base_dir=str(tmp_path / "in"))
    with pytest.raises(RenderError, match="outside every root"):
        r.render_path(str(tmp_path / "out/../../{name}"), {"name": "x"}, base_dir="/")


@pytest.mark.parametrize(
    "template",
    ["{name.__class__}", "{0}", "{}", "{name!r}", "{name:{size}}", "{unclosed"],
)
def test_no_code_runs_from_templates(template: str, roots: RootSet) -> None:
    with pytest.raises(RenderError):
        parse_template(template)
        Renderer(roots).render_text(template, {"name": "x", "size": 1})


# A rendered destination never escapes its root, whatever the file name or attributes.
component = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=30
) | st.sampled_from(["..", ".", "/", "../..", "~", "~root", "-rf", "a/../../b", "\x00", "\n"])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=component, camera=component, stem=component)
def test_rendered_paths_stay_inside_roots(
    roots: RootSet, tmp_path: Path, name: str, camera: str, stem: str
) -> None:
    renderer = Renderer(roots)
    out_root = roots["out"].path
    fields = {"name": name, "exif.camera": camera, "stem": stem}
    for template in (out_root + "/{exif.camera}/{name}", out_root + "/{stem}-{name}",
                     "{name}", "{stem}/{name}"):  # fmt: skip
        try:
            path = renderer.render_path(template, fields, base_dir=roots["in"].path)
        except RenderError:
            continue
        assert roots.locate(path) is not None, path
        real = os.path.realpath(os.path.dirname(path))
        real_roots = [os.path.realpath(r.path) for r in roots]
        assert any(real == r or real.startswith(r + "/") for r in real_roots), path


@pytest.mark.parametrize(
    "template",
    ["{size:99999999999}", "{size:.99999999999f}", "{size:0>1000000}", "{mtime:%100000Y}",
     "{name:" + "x" * 300 + "}"],
)  # fmt: skip
def test_widths_past_a_file_name_are_refused_before_rendering(template: str) -> None:
    # {size:99999999999} asked format() for 100 GB: MemoryError in scan, passed check
    with pytest.raises(RenderError, match="at most"):
        parse_template(template)


@pytest.mark.parametrize(
    ("name", "spec", "ok"),
    [("name", "%Q", False), ("size", ">>>", False), ("size", "05d", True),
     ("size", ",.2f", True), ("mtime", "%Y-%m", True), ("name", ">10", True),
     ("mtime", "%", True), ("hash", ".8", True), ("size", "x", True), ("size", "s", True),
     ("name", "d", False), ("now", "%F", True)],
)  # fmt: skip
def test_specs_are_tried_on_a_value_of_the_field_type(name: str, spec: str, ok: bool) -> None:
    problem = spec_problem(name, spec, FIELD_SAMPLES.get(name, "x"))
    assert (problem is None) == ok, problem
