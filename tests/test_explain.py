"""`clerk explain` is a traced dry run of the plan `clerk scan` executes: same rule
selection, same compiled matchers, same action planning. Real files, the real CLI in a
subprocess, the real store; the differential test also calls the engine in-process, as
the platform's `preview` will."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clerk.samples import pdf, png

Run = Callable[..., Any]


@pytest.fixture
def world(tmp_path: Path, clerk_home: Path) -> dict[str, Path]:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    for d in (inbox, out):
        d.mkdir()
    (clerk_home / "config.yaml").write_text(f"trash_dir: {tmp_path / 'trash'}\n")
    return {"inbox": inbox, "out": out}


def rules(write_rules: Callable[[str], Path], world: dict[str, Path], body: str) -> None:
    write_rules(
        f"roots:\n  inbox: {{path: {world['inbox']}}}\n"
        f"  out: {{path: {world['out']}, watch: false}}\n"
        "rules:\n" + body.replace("{out}", str(world["out"]))
    )


def explain_json(clerk: Run, path: Path, *args: str) -> dict[str, Any]:
    result = clerk("explain", str(path), "--json", *args, check=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def by_rule(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["rule"]: entry for entry in report["rules"]}


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_a_disabled_rule_never_applies(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    rules(
        write_rules,
        world,
        """\
  - name: off
    in: inbox
    enabled: false
    match: [{extension: txt}]
    actions: [{move: "{out}/off/{name}"}]
  - name: texts
    in: inbox
    match: [{extension: txt}]
    actions: [{move: "{out}/texts/{name}"}]
""",
    )
    path = world["inbox"] / "a.txt"
    path.write_text("hello")
    report = explain_json(clerk, path)
    assert "off" not in report["would_apply"]
    assert report["would_apply"] == ["texts"]
    assert by_rule(report)["off"]["status"] == "disabled"
    assert by_rule(report)["off"]["matched"] is None  # scan never asks its filters
    text = clerk("explain", str(path), check=True).stdout
    assert "rule off: disabled" in text and "would apply: texts" in text
    clerk("scan", check=True)
    assert files_under(world["out"]) == ["texts/a.txt"]


def test_rules_a_scan_does_not_run_are_listed_as_such(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    rules(
        write_rules,
        world,
        """\
  - name: arrivals
    in: inbox
    on: [created]
    match: [{extension: txt}]
    actions: [{move: "{out}/arrivals/{name}"}]
  - name: elsewhere
    in: out
    match: [{extension: txt}]
    actions: [{move: "{out}/elsewhere/{name}"}]
  - name: sweep
    in: inbox
    every: 1h
    match: [{extension: txt}]
    actions: [{move: "{out}/swept/{name}"}]
""",
    )
    path = world["inbox"] / "a.txt"
    path.write_text("hello")
    report = explain_json(clerk, path)
    assert not report["would_apply"]
    entries = by_rule(report)
    assert entries["arrivals"]["status"] == "not triggered"
    assert entries["elsewhere"]["status"] == "other root"
    assert entries["sweep"]["status"] == "lifecycle"
    assert report["plan"]["ops"] == []
    text = clerk("explain", str(path), check=True).stdout
    assert "rule arrivals: not triggered by scan (on: created)" in text
    assert "rule elsewhere: not in root inbox (in: out)" in text
    assert "no rule would apply" in text
    # --rule picks rules as `clerk scan --rule` does: the lifecycle rule runs now
    swept = explain_json(clerk, path, "--rule", "sweep")
    assert swept["would_apply"] == ["sweep"]
    assert by_rule(swept)["arrivals"]["status"] == "not selected"
    assert swept["plan"]["ops"][0]["dst"] == str(world["out"] / "swept" / "a.txt")
    # and scan agrees: nothing happens to the file
    dry = json.loads(clerk("scan", "--dry-run", "--json", check=True).stdout)
    assert dry["matched"] == 0 and dry["files"] == []
    clerk("scan", check=True)
    assert files_under(world["inbox"]) == ["a.txt"]


def test_continue_chains_and_later_rules_see_the_moved_file(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    rules(
        write_rules,
        world,
        """\
  - name: tag-invoices
    in: inbox
    match: [{content: 'Invoice\\s+(?P<customer>\\w+)'}]
    actions: [{tag: [invoice, "{customer}"]}]
    continue: true
  - name: dated
    in: inbox
    match: [{extension: txt}]
    actions: [{rename: "done-{name}"}]
    continue: true
  - name: texts
    in: inbox
    match: [{name: "done-*"}]
    actions: [{move: "{out}/texts/{name}"}]
  - name: never
    in: inbox
    match: [{extension: txt}]
    actions: [{move: "{out}/never/{name}"}]
""",
    )
    path = world["inbox"] / "inv.txt"
    path.write_text("Invoice ACME\n")
    report = explain_json(clerk, path)
    assert report["would_apply"] == ["tag-invoices", "dated", "texts"]
    entries = by_rule(report)
    assert entries["never"]["status"] == "not reached"
    renamed = str(world["inbox"] / "done-inv.txt")
    # `texts` judged the file under its new name, and moves it from there
    assert entries["texts"]["path"] == renamed
    assert [(o["kind"], o["src"], o["dst"]) for o in report["plan"]["ops"]] == [
        ("rename", str(path), renamed),
        ("move", renamed, str(world["out"] / "texts" / "done-inv.txt")),
    ]
    assert report["plan"]["effects"] == ["tag +invoice,ACME"]
    assert entries["tag-invoices"]["actions"][0]["effect"] == "tag +invoice,ACME"
    text = clerk("explain", str(path), check=True).stdout
    assert "rule never: not reached: rule texts matched first (no continue: true)" in text
    assert "would apply: tag-invoices, dated, texts" in text
    clerk("scan", check=True)
    assert files_under(world["out"]) == ["texts/done-inv.txt"]


NESTED = """\
  - name: nested
    in: inbox
    match:
      - any:
          - extension: pdf
          - not: {name: "*.txt"}
      - size: "< 1MB"
    actions: [{move: "{out}/kept/{name}"}]
"""


def test_a_nested_match_shows_each_verdict(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    rules(write_rules, world, NESTED)
    notes, report_pdf = world["inbox"] / "notes.md", world["inbox"] / "report.pdf"
    notes.write_text("hello")
    report_pdf.write_bytes(pdf(1))

    tree = by_rule(explain_json(clerk, notes))["nested"]["match"]
    assert (tree["kind"], tree["matched"]) == ("all", True)
    any_node, size = tree["children"]
    assert (any_node["kind"], any_node["matched"]) == ("any", True)
    extension, not_node = any_node["children"]
    assert (extension["name"], extension["matched"]) == ("extension", False)
    assert (extension["seen"], extension["wanted"]) == ("md", ["pdf"])
    assert (not_node["kind"], not_node["matched"]) == ("not", True)
    assert not_node["children"][0]["name"] == "name"
    assert not_node["children"][0]["matched"] is False
    assert (size["name"], size["matched"], size["seen"]) == ("size", True, 5)
    assert size["wanted"] == [{"op": "<", "value": 1000000}]

    # a match decided early: scan does not check the rest, and explain says so
    shortcut = by_rule(explain_json(clerk, report_pdf))["nested"]["match"]["children"][0]
    assert shortcut["children"][0]["matched"] is True
    assert shortcut["children"][1]["matched"] is None  # not checked

    text = clerk("explain", str(notes), check=True).stdout
    assert "    + any:" in text
    assert "        - extension: extension 'md' not in [pdf]" in text
    assert "        + not:" in text
    assert "            - name: name 'notes.md' matches none of ['*.txt']" in text
    assert "    + size: size 5 B is < 1 MB" in text
    checked = clerk("explain", str(report_pdf), check=True).stdout
    assert "        . not: not checked" in checked


def test_ages_are_readable(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    rules(
        write_rules,
        world,
        """\
  - name: stale
    in: inbox
    match: [{age: "> 30d"}]
    actions: [{move: "{out}/stale/{name}"}]
""",
    )
    path = world["inbox"] / "old.iso"
    path.write_text("x")
    then = time.time() - (10 * 86400 + 35)
    os.utime(path, (then, then))
    text = clerk("explain", str(path), check=True).stdout
    assert "- age: age 10d 0h is not > 30d" in text
    assert "e+" not in text
    (age,) = by_rule(explain_json(clerk, path))["stale"]["match"]["children"]
    assert 864035 <= age["seen"] < 864035 + 60
    assert age["wanted"] == [{"op": ">", "value": 2592000}]


BOOM = """\
from clerk.plugins.api import Filter, hookimpl


class Boom(Filter):
    "`boom: true`: raises on files named bad*, answers a plain bool for the others."

    def match(self, file):
        if file.name.startswith("bad"):
            raise RuntimeError("cannot judge " + file.name)
        return True


@hookimpl
def register_filters(register):
    register("boom", Boom)
"""


def test_a_failing_filter_stops_the_file_as_scan_does(world, write_rules, clerk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "boom.py").write_text(BOOM)
    home = Path(os.environ["CLERK_HOME"])
    config_text = (home / "config.yaml").read_text() + f"plugins: {{dir: {plugins}}}\n"
    (home / "config.yaml").write_text(config_text)
    rules(
        write_rules,
        world,
        """\
  - name: judged
    in: inbox
    match: [{boom: true}]
    actions: [{move: "{out}/judged/{name}"}]
  - name: later
    in: inbox
    actions: [{move: "{out}/later/{name}"}]
""",
    )
    env = {"CLERK_DISABLE_PLUGIN_AUTOLOAD": "", "CLERK_LOAD_PLUGINS": "boom"}
    bad, good = world["inbox"] / "bad.txt", world["inbox"] / "good.txt"
    bad.write_text("b")
    good.write_text("g")
    report = json.loads(clerk("explain", str(bad), "--json", env=env, check=True).stdout)
    entries = by_rule(report)
    failure = "filter failed: RuntimeError: cannot judge bad.txt"
    assert entries["judged"]["status"] == "error"
    assert entries["judged"]["reason"] == failure
    (boom,) = entries["judged"]["match"]["children"]
    assert boom["error"] == "failed: RuntimeError: cannot judge bad.txt"
    assert entries["later"]["status"] == "not reached"
    assert entries["later"]["reason"] == "not reached: rule judged failed"
    assert report["would_apply"] == [] and report["plan"]["ops"] == []
    assert report["errors"] == [f"{bad}: rule judged: {failure}"]
    # a plugin answering a plain bool is judged as scan judges it
    fine = json.loads(clerk("explain", str(good), "--json", env=env, check=True).stdout)
    assert fine["would_apply"] == ["judged"]
    assert by_rule(fine)["judged"]["match"]["children"][0]["matched"] is True
    dry = json.loads(clerk("scan", "--dry-run", "--json", env=env).stdout)
    assert dry["errors"] == report["errors"]
    assert [f["rules"] for f in dry["files"] if f["path"] == str(good)] == [["judged"]]


# --- explain plans what scan plans and does ------------------------------------------------

RULE_SETS = {
    "sort": """\
  - name: images
    in: inbox
    match: [{mime: "image/*"}]
    actions: [{move: "{out}/images/{name}"}]
  - name: pdfs
    in: inbox
    match: [{extension: pdf}]
    actions: [{move: "{out}/docs/{mtime:%Y}/{name}"}]
""",
    "chain": """\
  - name: off
    in: inbox
    enabled: false
    actions: [{move: "{out}/off/{name}"}]
  - name: prefix
    in: inbox
    match: {not: {name: "*.md"}}
    actions: [{rename: "x-{name}"}]
    continue: true
  - name: by-ext
    in: inbox
    match: {any: [{extension: [png, pdf]}, {name: "x-*"}]}
    actions: [{move: "{out}/{ext}/{name}"}]
""",
    "conflicts": """\
  - name: flat
    in: inbox
    match: [{size: "> 0"}]
    actions: [{move: "{out}/{name}", on_conflict: rename}]
""",
}


@pytest.mark.parametrize("rule_set", sorted(RULE_SETS))
def test_explain_plans_what_scan_plans_and_does(  # type: ignore[no-untyped-def]
    rule_set, world, write_rules, clerk
) -> None:
    from clerk.app import App
    from clerk.rules.explain import explain

    rules(write_rules, world, RULE_SETS[rule_set])
    inbox, out = world["inbox"], world["out"]
    (inbox / "a.png").write_bytes(png(1))
    (inbox / "b.pdf").write_bytes(pdf(2))
    (inbox / "notes.md").write_text("notes")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "c.txt").write_text("c")
    (out / "a.png").write_bytes(b"already there")  # a conflict both must predict

    def key(op: Any) -> tuple[str, str, str | None, str | None]:
        op = op if isinstance(op, dict) else vars(op)
        return op["kind"], op["src"], op["dst"], op["rule"]

    app = App()
    ruleset = app.rules()
    planned = {
        o.path: [key(op) for op in o.ops]
        for o in app.engine(ruleset, dry_run=True, keep_outcomes=True).scan().outcomes
    }
    explained = {}
    for path in map(str, sorted(inbox.rglob("*"))):
        if os.path.isfile(path):
            # the platform's `preview`: a plain function, a typed result
            result = explain(app.engine(ruleset, dry_run=True), path)
            assert [key(op) for op in result.ops] == planned.get(path, []), path
            assert result.would_apply == result.outcome.rules
            explained[path] = result
    assert len(explained) == 4 and any(planned.values())

    done = json.loads(clerk("scan", "--json", check=True).stdout)
    acted = {f["path"]: [key(op) for op in f["ops"]] for f in done["files"]}
    for path, result in explained.items():
        assert [key(op) for op in result.ops] == acted.get(path, []), path
        final = next((op.dst for op in reversed(result.ops) if op.kind in ("move", "rename")), path)
        assert os.path.isfile(final), (path, final)
