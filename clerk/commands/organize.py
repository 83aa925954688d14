"""`clerk init | check | scan | explain | undo | demo`: rules applied to files.

Imported only when one of them runs (see `clerk.cli.register_lazy`), so that
`clerk --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from clerk.cli import app
from clerk.errors import ClerkError
from clerk.output import json_option, print_json, printable

if TYPE_CHECKING:
    from clerk.app import App
    from clerk.rules.model import RuleSet

# --- init / check / scan / explain ----------------------------------------------------------


@click.command()
@click.option("--force", is_flag=True, help="Overwrite existing starter files.")
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Write a commented starter config.yaml and rules.d/starter.yaml."""
    from clerk.starter import write_starter

    paths = app(ctx).config.paths
    for path, status in write_starter(paths, force=force):
        click.echo(f"{status}: {path}")


@click.command()
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Check config and rule files; report every problem as file:line:col: message."""
    ruleset, problems = app(ctx).check()
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        print_json(
            {
                "ok": not errors,
                "files": [str(f) for f in ruleset.files],
                "rules": len(ruleset.rules),
                "problems": [
                    {"where": str(p.where), "severity": p.severity, "message": p.message}
                    for p in problems
                ],
            }
        )
    else:
        for problem in problems:
            click.echo(str(problem))
        if not errors:
            click.echo(
                f"ok: {len(ruleset.rules)} rules, {len(ruleset.roots)} roots, "
                f"{len(ruleset.files)} files"
            )
        else:
            click.echo(f"{len(errors)} error{'s' if len(errors) != 1 else ''} found", err=True)
    if errors:
        ctx.exit(1)


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--dry-run", "-n", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--no-run", is_flag=True, help="Queue the runs `run:` actions start; execute none.")
@click.option(
    "--rule", "rules", multiple=True, help="Only this rule (repeatable); also runs lifecycle rules."
)
@click.option("--root", "root_overrides", multiple=True, metavar="NAME=PATH",
              help="Use PATH for root NAME (try rules on a copy).")  # fmt: skip
@json_option
@click.pass_context
def scan(
    ctx: click.Context,
    targets: tuple[str, ...],
    dry_run: bool,
    no_run: bool,
    rules: tuple[str, ...],
    root_overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Apply the rules once to every file in the roots (or TARGETS: root names or paths).

    One walk serves all rules; the first matching rule wins unless it says
    `continue: true`. Every operation is journaled and can be undone with `clerk undo`.
    """
    from clerk.app import parse_root_overrides
    from clerk.output import progress

    a = app(ctx)
    ruleset = a.rules(parse_root_overrides(root_overrides))
    for warning in a.warnings:
        click.echo(str(warning), err=True)
    if not dry_run:
        _recover(a, ruleset)
    engine = a.engine(ruleset, dry_run=dry_run, keep_outcomes=as_json or dry_run,
                      run_sink=_queue_only(a, ruleset) if no_run else None)  # fmt: skip
    root_names = [t for t in targets if t in ruleset.roots]
    paths = [t for t in targets if t not in ruleset.roots]
    if root_names and paths:
        raise ClerkError("give either root names or paths, not both")
    with progress("scanning", enabled=not as_json) as advance:
        summary = engine.scan(paths, root_names=root_names, rule_names=rules, progress=advance)
    if as_json:
        print_json({**summary.as_dict(), "files": [o.as_dict() for o in summary.outcomes]})
    else:
        _print_scan(summary, dry_run)
    if summary.failed:
        ctx.exit(1)


def _queue_only(a: Any, ruleset: Any) -> Any:
    """With --no-run, `run:` actions queue their runs and no worker starts."""
    from clerk.engine.queue import StoreRuns

    return StoreRuns(a, ruleset.workflows, start_worker=False)


def _print_scan(summary: Any, dry_run: bool) -> None:
    if dry_run:
        for outcome in summary.outcomes:
            for op in outcome.ops:
                if op.status == "failed":  # the op would not happen: say why, as a scan does
                    click.echo(printable(f"error: {op.src}: {op.kind}: {op.error}"), err=True)
                    continue
                dst = f" -> {op.dst}" if op.dst else ""
                why = f" (skipped: {op.note})" if op.status == "skipped" and op.note else ""
                click.echo(printable(f"[{op.rule}] {op.kind} {op.src}{dst}{why}"))
            for effect in outcome.effects:
                click.echo(printable(f"[{', '.join(outcome.rules)}] {effect} {outcome.path}"))
            if outcome.error:
                click.echo(printable(f"error: {outcome.path}: {outcome.error}"), err=True)
    else:
        for error in summary.errors:
            click.echo(f"error: {printable(error)}", err=True)
    counts = summary.planned if dry_run else summary.done
    acted = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing"
    verb = "would do" if dry_run else "done"
    click.echo(
        f"{summary.seen} files seen, {summary.matched} matched; {verb}: {acted}; "
        + (f"{summary.already_done} already done, " if summary.already_done else "")
        + f"{summary.skipped} skipped, {summary.failed} failed ({summary.elapsed:.2f}s)"
    )
    if summary.batches and not dry_run:
        click.echo(f"undo with: clerk undo --batch {summary.batches[0]}"
                   + (" (and the other batches of this scan)" if len(summary.batches) > 1 else ""))  # fmt: skip # noqa: E501


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--rule", "rules", multiple=True, help="Only this rule (repeatable), as `scan --rule` does."
)
@click.option(
    "--on",
    "trigger",
    default="scan",
    show_default=True,
    type=click.Choice(["scan", "created", "modified", "moved"]),
    help="The trigger to explain: a scan, or a watch event the daemon acts on.",
)
@click.option("--root", "root_overrides", multiple=True, metavar="NAME=PATH",
              help="Use PATH for root NAME.")  # fmt: skip
@json_option
@click.pass_context
def explain(
    ctx: click.Context,
    path: str,
    rules: tuple[str, ...],
    trigger: str,
    root_overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show how each rule and filter judges PATH, and what a scan would do to it.

    A traced `clerk scan --dry-run PATH`: the same rules, matchers and plan (conflicts
    and `continue: true` chains included). Changes nothing.
    """
    from clerk.app import parse_root_overrides
    from clerk.rules.explain import explain as explain_path

    a = app(ctx)
    ruleset = a.rules(parse_root_overrides(root_overrides))
    engine = a.engine(ruleset, dry_run=True)
    result = explain_path(engine, path, trigger=trigger, rule_names=rules)
    if as_json:
        print_json(result.as_dict())
        return
    _print_explanation(result)


def _print_explanation(result: Any) -> None:
    from clerk.units import format_size, format_time

    click.echo(f"{printable(result.path)}  (root {result.root}, {printable(result.relpath)})")
    facts = result.facts
    extra = (f", mime {facts.mime}" if facts.mime else "") + (
        f", tags {', '.join(facts.tags)}" if facts.tags else ""
    )
    click.echo(f"  size {format_size(facts.size)}, modified "
               f"{format_time(facts.mtime)}{extra}")  # fmt: skip
    for verdict in result.rules:
        if verdict.status == "applies":
            moved = verdict.path and verdict.path != result.path
            click.echo(f"rule {verdict.rule}: MATCH"
                       + (f" (as {printable(verdict.path)})" if moved else ""))  # fmt: skip
        elif verdict.status == "no match":
            click.echo(f"rule {verdict.rule}{' (lifecycle)' if verdict.lifecycle else ''}: no")
        elif verdict.status in ("waiting", "error"):
            click.echo(f"rule {verdict.rule}: {verdict.status}: {printable(verdict.reason)}")
        else:  # the reason says it: "disabled", "not reached: ...", "not in root ..."
            click.echo(f"rule {verdict.rule}: {printable(verdict.reason)}")
        if verdict.match is not None:
            for line in _match_lines(verdict.match):
                click.echo(line)
        for action in verdict.actions:
            click.echo(f"    => {printable(_action_text(action))}")
        if verdict.error:
            click.echo(f"    !! {printable(verdict.error)}")
    for error in result.errors:
        click.echo(f"error: {printable(error)}", err=True)
    applied = result.would_apply
    click.echo(f"would apply: {', '.join(applied)}" if applied else "no rule would apply")


def _match_lines(node: Any, depth: int = 1, *, top: bool = True) -> list[str]:
    """The match tree, one line per node; a rule's list of filters shows as its children."""
    if top and node.kind == "all" and node.children:
        return [line for child in node.children for line in _match_lines(child, depth, top=False)]
    mark = "." if node.matched is None else "+" if node.matched else "-"
    reason = f" {printable(node.reason)}" if node.reason else ""
    lines = [f"{'    ' * depth}{mark} {node.name}:{reason}"]
    if node.matched is not None or node.error:  # below a node not checked: nothing checked
        for child in node.children:
            lines.extend(_match_lines(child, depth + 1, top=False))
    return lines


def _action_text(action: Any) -> str:
    if action.error:
        return f"{action.action}: {action.error}"
    if action.effect is not None:
        return str(action.effect)
    op = action.op
    text = f"{op.kind} -> {op.dst}" if op.dst else op.kind
    if op.note:
        text += f" ({op.note})"
    if op.status not in ("planned", "done"):
        text += f": {op.status}" + (f": {op.error}" if op.error else "")
    return text


# --- undo -----------------------------------------------------------------------------------


@click.command()
@click.argument("op_id", required=False, type=int)
@click.option("--last", type=int, help="Undo the last N operations.")
@click.option("--batch", help="Undo every operation of a batch (as printed by scan).")
@click.option("--since", help="Undo operations newer than this (e.g. 1h, 30m).")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be undone.")
@json_option
@click.pass_context
def undo(
    ctx: click.Context,
    op_id: int | None,
    last: int | None,
    batch: str | None,
    since: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Reverse journaled operations while the files are still as clerk left them.

    Undoing an undo redoes it. Refuses, per file, with a reason when the world changed.
    """
    import dataclasses
    import time

    from clerk.store.catalog import Catalog
    from clerk.store.journal import select_ops
    from clerk.units import parse_duration

    if sum(x is not None for x in (op_id, last, batch, since)) != 1:
        raise click.UsageError("give exactly one of OP_ID, --last N, --batch ID, --since AGE")
    a = app(ctx)
    ruleset = a.rules()
    if not dry_run:  # what an interrupted run left half done, before undoing anything
        _recover(a, ruleset)
    cutoff = time.time() - parse_duration(since) if since else None
    ids = select_ops(a.store, op_id=op_id, last=last, batch=batch, since=cutoff)
    if not ids:
        raise ClerkError("no operation to undo matches")
    results = a.fileops(ruleset, dry_run=dry_run).undo(ids, dry_run=dry_run)
    if not dry_run:
        with a.store.atomic():
            Catalog(a.store).apply_results(results, ruleset.roots)
    if as_json:
        print_json([dataclasses.asdict(r) for r in results])
    else:
        for r in results:
            dst = f" -> {r.dst}" if r.dst else ""
            reason = f": {r.error}" if r.error else ""
            click.echo(printable(f"{r.status}: {r.kind} {r.src}{dst}{reason}"))
    if any(r.status == "failed" for r in results):
        ctx.exit(1)


def _recover(a: App, ruleset: RuleSet) -> None:
    """Settle the ops a crash left pending before this command acts (scan and undo)."""
    recovered = a.recover(ruleset)
    if recovered:
        click.echo(f"recovered {len(recovered)} interrupted operation(s)", err=True)


# --- demo -----------------------------------------------------------------------------------


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="demo",
              show_default=True, help="Where to create the demo.")  # fmt: skip
@click.pass_context
def demo(ctx: click.Context, directory: str) -> None:
    """Create a demo inbox of real files and organize it with the shipped example rules."""
    from clerk.demo import run_demo

    code = run_demo(directory)
    ctx.exit(code)
