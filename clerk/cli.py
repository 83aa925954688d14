"""The `clerk` command line. Commands are thin: they parse, call a module, print.

Heavy modules are imported inside the commands so that `clerk --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from clerk import __version__
from clerk.errors import ClerkError, ConfigError
from clerk.output import json_option, listing_options, print_json, print_rows, printable


class ClerkGroup(click.Group):
    """Turns errors a user can fix into messages (exit 1) instead of tracebacks, and
    adds commands from plugins (`register_commands`) when they are first needed."""

    _plugins_loaded = False

    #: commands that live in other rooms, imported only when used (keeps `--help` fast):
    #: name -> (module:attribute, the short help `clerk --help` shows without importing)
    lazy_commands: dict[str, tuple[str, str]] = {}

    def _lazy(self, name: str) -> click.Command | None:
        entry = self.lazy_commands.get(name)
        if entry is None:
            return None
        import importlib

        module_name, _, attr = entry[0].partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        self.add_command(command, name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            count = len(exc.problems)
            click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
            ctx.exit(1)
        except ClerkError as exc:
            raise click.ClickException(str(exc)) from None

    def _load_plugin_commands(self) -> None:
        if ClerkGroup._plugins_loaded:
            return
        ClerkGroup._plugins_loaded = True
        import os

        if os.environ.get("CLERK_DISABLE_PLUGIN_AUTOLOAD") or not _any_clerk_entry_points():
            return
        from clerk.plugins.manager import make_plugin_manager

        # Only the environment decides here (CLERK_LOAD_PLUGINS): reading config.yaml
        # for every `clerk --help` would cost more than the commands are worth.
        make_plugin_manager().hook.register_commands(cli=self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name) or self._lazy(cmd_name)
        if command is None:
            self._load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but lazy commands show their registered help unimported."""
        rows = []
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        for name in names:
            if name not in self.commands and name in self.lazy_commands:
                rows.append((name, _shorten(self.lazy_commands[name][1], limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))


def _shorten(text: str, limit: int) -> str:
    """Cut help text at a word to fit `limit`, the way click shortens command help."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 1)].rsplit(" ", 1)[0] + "..."


def _any_clerk_entry_points() -> bool:
    """Is any installed distribution a clerk plugin (entry point group `clerk`)?

    A deliberately small look at `*.dist-info/entry_points.txt` on sys.path, so that
    `clerk --help` does not pay for importing importlib.metadata and pluggy when no
    plugin is installed. When one is, the real loader (importlib.metadata) takes over.
    """
    import os

    for base in sys.path:
        try:
            names = os.listdir(base or ".")
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(base or ".", name, "entry_points.txt"), "rb") as fh:
                    if b"[clerk]" in fh.read():
                        return True
            except OSError:
                continue
    return False


def app(ctx: click.Context) -> Any:
    from clerk.app import App

    root = ctx.find_root()
    if not isinstance(root.obj, App):
        root.obj = App(root.params.get("config"), root.params.get("profile"))
    return root.obj


@click.group(cls=ClerkGroup)
@click.version_option(__version__, prog_name="clerk")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="CLERK_CONFIG",
    help="Config file (default: $CLERK_HOME/config.yaml, else the XDG config dir).",
)
@click.option("--profile", envvar="CLERK_PROFILE", help="Settings profile from config.yaml.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
def cli(config: str | None, profile: str | None, verbose: int) -> None:
    """clerk: organize files with rules, safely, and run the jobs they trigger.

    Start with `clerk init`, edit the rules it writes, `clerk check` them, then
    `clerk scan --dry-run` to see what would happen.
    """
    import logging

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# --- init / check / scan / explain ----------------------------------------------------------


@cli.command()
@click.option("--force", is_flag=True, help="Overwrite existing starter files.")
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Write a commented starter config.yaml and rules.d/starter.yaml."""
    from clerk.starter import write_starter

    paths = app(ctx).config.paths
    for path, status in write_starter(paths, force=force):
        click.echo(f"{status}: {path}")


@cli.command()
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


@cli.command()
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
        recovered = a.recover(ruleset)
        if recovered:
            click.echo(f"recovered {len(recovered)} interrupted operation(s)", err=True)
    engine = a.engine(ruleset, dry_run=dry_run, keep_outcomes=as_json or dry_run)
    root_names = [t for t in targets if t in ruleset.roots]
    paths = [t for t in targets if t not in ruleset.roots]
    if root_names and paths:
        raise ClerkError("give either root names or paths, not both")
    with progress("scanning", enabled=not as_json) as advance, _runs_queued_only(no_run):
        summary = engine.scan(paths, root_names=root_names, rule_names=rules, progress=advance)
    if as_json:
        print_json({**summary.as_dict(), "files": [o.as_dict() for o in summary.outcomes]})
    else:
        _print_scan(summary, dry_run)
    if summary.failed:
        ctx.exit(1)


def _runs_queued_only(no_run: bool) -> Any:
    """With --no-run, `run:` actions queue their runs and no worker starts."""
    import contextlib

    if not no_run:
        return contextlib.nullcontext()
    from clerk.engine.queue import queue_only, run_sink

    return run_sink(queue_only)


def _print_scan(summary: Any, dry_run: bool) -> None:
    if dry_run:
        for outcome in summary.outcomes:
            for op in outcome.ops:
                dst = f" -> {printable(op.dst)}" if op.dst else ""
                click.echo(f"[{op.rule}] {op.kind} {printable(op.src)}{dst}")
            for effect in outcome.effects:
                click.echo(f"[{', '.join(outcome.rules)}] {effect} {printable(outcome.path)}")
            if outcome.error:
                click.echo(f"error: {printable(outcome.path)}: {outcome.error}", err=True)
    else:
        for error in summary.errors:
            click.echo(f"error: {printable(error)}", err=True)
    counts = summary.planned if dry_run else summary.done
    acted = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing"
    verb = "would do" if dry_run else "done"
    click.echo(
        f"{summary.seen} files seen, {summary.matched} matched; {verb}: {acted}; "
        f"{summary.skipped} skipped, {summary.failed} failed ({summary.elapsed:.2f}s)"
    )
    if summary.batches and not dry_run:
        click.echo(f"undo with: clerk undo --batch {summary.batches[0]}"
                   + (" (and the other batches of this scan)" if len(summary.batches) > 1 else ""))  # fmt: skip # noqa: E501


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--root", "root_overrides", multiple=True, metavar="NAME=PATH",
              help="Use PATH for root NAME.")  # fmt: skip
@json_option
@click.pass_context
def explain(ctx: click.Context, path: str, root_overrides: tuple[str, ...], as_json: bool) -> None:
    """Show how every rule judges PATH: each filter's verdict and where it would go.

    Changes nothing.
    """
    from clerk.app import parse_root_overrides

    a = app(ctx)
    ruleset = a.rules(parse_root_overrides(root_overrides))
    engine = a.engine(ruleset, dry_run=True)
    report = engine.explain(path)
    if as_json:
        print_json(report)
        return
    click.echo(f"{printable(report['path'])}  (root {report['root']}, {report['relpath']})")
    facts = report["facts"]
    click.echo(f"  size {facts['size']}, modified {facts['mtime']}"
               + (f", mime {facts['mime']}" if facts["mime"] else ""))  # fmt: skip
    for entry in report["rules"]:
        if "error" in entry:
            click.echo(f"rule {entry['rule']}: error: {entry['error']}")
            continue
        mark = "MATCH" if entry["matched"] else "no"
        kind = " (lifecycle)" if entry["lifecycle"] else ""
        click.echo(f"rule {entry['rule']}{kind}: {mark}")
        for f in entry["filters"]:
            click.echo(f"    {'+' if f['matched'] else '-'} {f['filter']}: {f['reason']}")
        for line in entry["actions"]:
            click.echo(f"    => {printable(line)}")
    applied = report["would_apply"]
    click.echo(f"first matching rule: {applied}" if applied else "no rule matches")


# --- undo -----------------------------------------------------------------------------------


@cli.command()
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
            dst = f" -> {printable(r.dst)}" if r.dst else ""
            reason = f": {r.error}" if r.error else ""
            click.echo(f"{r.status}: {r.kind} {printable(r.src)}{dst}{reason}")
    if any(r.status == "failed" for r in results):
        ctx.exit(1)


# --- files ----------------------------------------------------------------------------------


@cli.group()
def files() -> None:
    """Query the file catalog."""


@files.command(name="list")
@click.option("--root", help="Only files in this root.")
@click.option("--mime", help="MIME glob, like image/*.")
@click.option("--tag", help="Only files with this tag.")
@click.option("--path", "glob", help="Glob on the path relative to the root.")
@click.option("--all", "show_all", is_flag=True, help="Include files that left their root.")
@click.option("--limit", type=int, default=None, help="At most this many rows.")
@listing_options
@click.pass_context
def files_list(
    ctx: click.Context,
    root: str | None,
    mime: str | None,
    tag: str | None,
    glob: str | None,
    show_all: bool,
    limit: int | None,
    as_json: bool,
    as_nl: bool,
) -> None:
    """List catalogued files."""
    from clerk.store.catalog import Catalog

    catalog = Catalog(app(ctx).db(readonly=True))
    rows = catalog.query(root=root, mime=mime, tag=tag, glob=glob,
                         state=None if show_all else "present", limit=limit)  # fmt: skip
    print_rows([r.as_dict() for r in rows], ["id", "root", "relpath", "size", "mime", "tags",
               "state"], as_json=as_json, as_nl=as_nl)  # fmt: skip


def _find_file(ctx: click.Context, spec: str) -> Any:
    import os

    from clerk.store.catalog import Catalog

    a = app(ctx)
    catalog = Catalog(a.db(readonly=True))
    if spec.isdigit():
        row = catalog.by_id(int(spec))
    else:
        located = a.rules().roots.locate(os.path.normpath(os.path.abspath(spec)))
        row = catalog.get(located[0].name, located[1]) if located else None
    if row is None:
        raise ClerkError(f"{spec} is not in the catalog (run `clerk scan` first?)")
    return row


@files.command(name="show")
@click.argument("file")
@json_option
@click.pass_context
def files_show(ctx: click.Context, file: str, as_json: bool) -> None:
    """Show what the catalog knows about FILE (a path or a catalog id), and its errors."""
    from clerk.store.events import file_errors

    found = _find_file(ctx, file)
    row = found.as_dict()
    row["errors"] = [e["error"] for e in file_errors(app(ctx).db(readonly=True), found.id)]
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        click.echo(f"{key:>9}: {value if value not in (None, [], {}) else ''}")


@files.command(name="history")
@click.argument("file")
@listing_options
@click.pass_context
def files_history(ctx: click.Context, file: str, as_json: bool, as_nl: bool) -> None:
    """Every operation FILE (a path or a catalog id) went through, oldest first."""
    from clerk.store.journal import history

    row = _find_file(ctx, file)
    ops = history(app(ctx).db(readonly=True), file_id=row.id)
    print_rows(ops, ["id", "created", "kind", "rule", "src", "dst", "state", "error"],
               as_json=as_json, as_nl=as_nl)  # fmt: skip


# --- plugins --------------------------------------------------------------------------------


@cli.group()
def plugins() -> None:
    """Inspect plugins."""


@plugins.command(name="list")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--hook", help="Only plugins implementing this hook.")
@listing_options
@click.pass_context
def plugins_list(
    ctx: click.Context, show_all: bool, hook: str | None, as_json: bool, as_nl: bool
) -> None:
    """List loaded plugins with version, source and hooks (and any that failed)."""
    pm = app(ctx).pm
    rows: list[dict[str, Any]] = [
        {"name": i.name, "version": i.version, "source": i.source, "hooks": i.hooks}
        for i in pm.plugin_infos()
        if (show_all or i.source != "builtin") and (hook is None or hook in i.hooks)
    ]
    if hook is None:
        rows += [{"name": f.name, "version": None, "source": f.source, "hooks": [],
                  "error": f.error} for f in pm.failures]  # fmt: skip
    print_rows(rows, ["name", "version", "source", "hooks", "error"], as_json=as_json,
               as_nl=as_nl)  # fmt: skip


@plugins.command(name="new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Where to create the clerk-NAME directory.")  # fmt: skip
def plugins_new(name: str, parent: str) -> None:
    """Create a plugin package clerk-NAME to start from (filter, classifier, tests)."""
    from pathlib import Path

    from clerk.plugins.scaffold import scaffold

    root = scaffold(name, Path(parent), __version__)
    click.echo(f"created {root}")
    click.echo(f"next: cd {root} && pip install -e '.[test]' && pytest")


# --- db -------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Look after the SQLite store."""


@db.command(name="path")
@click.pass_context
def db_path(ctx: click.Context) -> None:
    """Print where the store is."""
    click.echo(str(app(ctx).config.store_path))


@db.command(name="stats")
@json_option
@click.pass_context
def db_stats(ctx: click.Context, as_json: bool) -> None:
    """Row counts, file states, journal states and sizes."""
    from clerk.store.maintenance import stats

    data = stats(app(ctx).config.store_path)
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key}: {value}")


@db.command(name="check")
@click.pass_context
def db_check(ctx: click.Context) -> None:
    """Run SQLite's integrity and foreign-key checks; exit 1 on problems."""
    from clerk.store.maintenance import integrity_problems

    problems = integrity_problems(app(ctx).config.store_path)
    for problem in problems:
        click.echo(problem)
    if problems:
        ctx.exit(1)
    click.echo("ok")


@db.command(name="backup")
@click.argument("dest", type=click.Path(dir_okay=False))
@click.pass_context
def db_backup(ctx: click.Context, dest: str) -> None:
    """Copy the store to DEST consistently, even while the daemon writes to it."""
    from clerk.store.maintenance import backup

    pages = backup(app(ctx).config.store_path, dest)
    click.echo(f"backed up {pages} pages to {dest}")


# --- demo -----------------------------------------------------------------------------------


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="demo",
              show_default=True, help="Where to create the demo.")  # fmt: skip
@click.pass_context
def demo(ctx: click.Context, directory: str) -> None:
    """Create a demo inbox of real files and organize it with the shipped example rules."""
    from clerk.demo import run_demo

    code = run_demo(directory)
    ctx.exit(code)


def register_lazy(name: str, target: str, short_help: str) -> None:
    """Add a command that lives in another module ("clerk.daemon.cli:daemon").

    `short_help` is what `clerk --help` lists; tests/test_cli.py checks it matches the
    first line of the command's own help.
    """
    ClerkGroup.lazy_commands[name] = (target, short_help)


# Other rooms add their commands here, one line each: name, module:attribute, short help.
register_lazy(
    "daemon",
    "clerk.daemon.cli:daemon",
    "Run the daemon in the foreground: watch the roots and apply the rules.",
)
register_lazy(
    "status", "clerk.daemon.cli:status", "Show the daemon's state, roots, queue and last errors."
)
register_lazy(
    "reload",
    "clerk.daemon.cli:reload",
    "Make the daemon re-read its rules (bad rules: it keeps the running ones).",
)
register_lazy(
    "pause", "clerk.daemon.cli:pause", "Stop acting on files; arrivals are still noticed and wait."
)
register_lazy(
    "resume",
    "clerk.daemon.cli:resume",
    "Act on files again, starting with those that arrived while paused.",
)
register_lazy(
    "stop", "clerk.daemon.cli:stop", "Ask the daemon to finish the batch in flight and exit."
)
register_lazy(
    "jobs", "clerk.daemon.cli:jobs", "Lifecycle jobs: rules with `schedule:` or `every:`."
)
register_lazy("systemd", "clerk.daemon.cli:systemd", "systemd units for the daemon.")
register_lazy("run", "clerk.engine.cli:run", "Start a run of WORKFLOW.")
register_lazy("runs", "clerk.engine.cli:runs", "Inspect and control workflow runs.")


def main() -> None:  # pragma: no cover - the console script entry point is `cli`
    cli(prog_name="clerk")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
