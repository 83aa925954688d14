"""`clerk demo`: a demo inbox of real files, organized by the shipped example rules.

Everything lives under one directory (default ./demo): the inbox, the organized tree, the
store, the trash. Run it again and it starts over (only a directory it made itself is
ever removed: it carries a `.clerk-demo` marker).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import click

from clerk.samples import KINDS, make_tree

MARKER = ".clerk-demo"


def shipped_rules() -> Path:
    """The example rules shipped at the top of the source tree."""
    here = Path(__file__).resolve().parent.parent / "rules" / "downloads.yaml"
    if not here.exists():
        raise click.ClickException(
            f"the example rules are not at {here}; run the demo from a source checkout"
        )
    return here


def prepare(directory: Path) -> dict[str, Path]:
    if directory.exists():
        if not (directory / MARKER).exists() and any(directory.iterdir()):
            raise click.ClickException(
                f"{directory} exists and is not a clerk demo; choose another --dir"
            )
        shutil.rmtree(directory)
    layout = {name: directory / name for name in ("inbox", "organized", "home", "trash")}
    for path in layout.values():
        path.mkdir(parents=True)
    (directory / MARKER).write_text("made by `clerk demo`; safe to delete\n")
    make_tree(layout["inbox"], 24, lying=0.1, missing_ext=0.1, seed=7)
    inbox = layout["inbox"]
    # a duplicate, an old installer, and names that trip up naive tools
    shutil.copy(inbox / "file000000.png", inbox / "holiday copy.png")
    installer = inbox / "tool-1.0.deb"
    installer.write_bytes(b"!<arch>\ndebian-binary   " + b"0" * 64)
    old = time.time() - 45 * 86400
    os.utime(installer, (old, old))
    (inbox / "-leading dash.txt").write_bytes(KINDS["text"][1](99))
    (inbox / "Invoice ACME 2026.txt").write_text("Invoice ACME\nTotal: 42 EUR\n")
    config = layout["home"] / "config.yaml"
    config.write_text(
        f"store: {directory / 'clerk.db'}\n"
        f"trash_dir: {layout['trash']}\n"
        f"rules: [{shipped_rules()}]\n",
        encoding="utf-8",
    )
    return layout


def tree(root: Path) -> list[str]:
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        depth = Path(dirpath).relative_to(root).parts
        indent = "  " * len(depth)
        if depth:
            lines.append(f"{indent[:-2]}{depth[-1]}/")
        lines.extend(f"{indent}{name}" for name in sorted(filenames))
    return lines


def run_demo(directory: str) -> int:
    from clerk.app import App
    from clerk.output import printable

    base = Path(directory).absolute()
    layout = prepare(base)
    os.environ["CLERK_HOME"] = str(layout["home"])
    app = App()
    overrides = {"downloads": str(layout["inbox"]), "organized": str(layout["organized"])}
    click.secho(f"demo inbox: {layout['inbox']}", bold=True)
    click.echo("\n".join("  " + printable(line) for line in tree(layout["inbox"])))
    ruleset, problems = app.check(overrides)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        click.echo(str(problem), err=True)
    if errors:
        return 1
    ruleset = app.rules(overrides)
    click.secho(f"\nrules: {', '.join(r.name for r in ruleset.rules)}", bold=True)
    # lifecycle rules (schedule:) run on their schedule in the daemon; the demo runs
    # every rule once so you can see them all
    names = [r.name for r in ruleset.rules]
    summary = app.engine(ruleset).scan(root_names=["downloads"], rule_names=names)
    click.secho("\norganized:", bold=True)
    click.echo("\n".join("  " + printable(line) for line in tree(layout["organized"])))
    left = tree(layout["inbox"])
    click.secho("\nleft in the inbox:", bold=True)
    click.echo("\n".join("  " + printable(line) for line in left) or "  (nothing)")
    trashed = [p.name for p in (layout["trash"] / "files").glob("*")] if (
        layout["trash"] / "files").exists() else []  # fmt: skip
    if trashed:
        click.secho("\ntrashed (undoable):", bold=True)
        click.echo("\n".join("  " + printable(n) for n in sorted(trashed)))
    done = ", ".join(f"{n} {k}" for k, n in sorted(summary.done.items())) or "nothing"
    click.secho(
        f"\n{summary.seen} files seen, {summary.matched} matched; done: {done}; "
        f"{summary.failed} failed",
        bold=True,
    )
    for error in summary.errors:
        click.echo(f"error: {error}", err=True)
    click.echo(
        f"\nEvery operation is in the journal. Try:\n"
        f"  CLERK_HOME={layout['home']} clerk files list\n"
        f"  CLERK_HOME={layout['home']} clerk undo --batch {summary.batches[0]}"
        if summary.batches
        else ""
    )
    return 1 if summary.failed else 0
