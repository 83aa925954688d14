"""The `clerk` command line. Commands are thin: they parse, call a module, print.

This module holds only the top-level group: every command lives in a module imported
when it runs (`register_lazy` below; clerk's own are in `clerk.commands`), so that
`clerk --help` costs little more than importing click.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from clerk import __version__


class _Context(click.Context):
    def make_formatter(self) -> click.HelpFormatter:
        """click's formatter, told the terminal width: measuring it through
        `shutil.get_terminal_size` would import shutil (and its compression modules)
        for every `clerk --help`."""
        width = self.terminal_width
        if width is None and click.formatting.FORCED_WIDTH is None:
            width = max(min(_terminal_columns(), self.max_content_width or 80) - 2, 50)
        return self.formatter_class(width=width, max_width=self.max_content_width)


def _terminal_columns() -> int:
    """What `shutil.get_terminal_size().columns` says: $COLUMNS, the terminal, or 80."""
    import os

    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class ClerkGroup(click.Group):
    """Turns errors a user can fix into messages (exit 1) instead of tracebacks, and
    adds commands from plugins (`register_commands`) when they are first needed."""

    context_class = _Context
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
        from clerk.errors import ClerkError, ConfigError

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

    from clerk.output import OneLineFormatter

    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def register_lazy(name: str, target: str, short_help: str) -> None:
    """Add a command that lives in another module ("clerk.commands.daemon:daemon").

    `short_help` is what `clerk --help` lists; tests/test_cli.py checks it matches the
    first line of the command's own help.
    """
    ClerkGroup.lazy_commands[name] = (target, short_help)


# clerk's own commands: name, module:attribute, short help (the first line of its help).
_ORGANIZE = "clerk.commands.organize"
register_lazy(
    "init", f"{_ORGANIZE}:init", "Write a commented starter config.yaml and rules.d/starter.yaml."
)
register_lazy(
    "check",
    f"{_ORGANIZE}:check",
    "Check config and rule files; report every problem as file:line:col: message.",
)
register_lazy(
    "scan",
    f"{_ORGANIZE}:scan",
    "Apply the rules once to every file in the roots (or TARGETS: root names or paths).",
)
register_lazy(
    "explain",
    f"{_ORGANIZE}:explain",
    "Show how each rule and filter judges PATH, and what a scan would do to it.",
)
register_lazy(
    "undo",
    f"{_ORGANIZE}:undo",
    "Reverse journaled operations while the files are still as clerk left them.",
)
register_lazy(
    "demo",
    f"{_ORGANIZE}:demo",
    "Create a demo inbox of real files and organize it with the shipped example rules.",
)
register_lazy("files", "clerk.commands.catalog:files", "Query the file catalog.")
register_lazy("plugins", "clerk.commands.plugins:plugins", "Inspect plugins.")
register_lazy("db", "clerk.commands.store:db", "Look after the SQLite store.")
# Other rooms add their commands here, one line each.
register_lazy(
    "daemon",
    "clerk.commands.daemon:daemon",
    "Run the daemon in the foreground: watch the roots and apply the rules.",
)
register_lazy(
    "status",
    "clerk.commands.daemon:status",
    "Show the daemon's state, roots, queue and last errors.",
)
register_lazy(
    "reload",
    "clerk.commands.daemon:reload",
    "Make the daemon re-read its rules (bad rules: it keeps the running ones).",
)
register_lazy(
    "pause",
    "clerk.commands.daemon:pause",
    "Stop acting on files; arrivals are still noticed and wait.",
)
register_lazy(
    "resume",
    "clerk.commands.daemon:resume",
    "Act on files again, starting with those that arrived while paused.",
)
register_lazy(
    "stop", "clerk.commands.daemon:stop", "Ask the daemon to finish the batch in flight and exit."
)
register_lazy(
    "jobs",
    "clerk.commands.daemon:jobs",
    "Scheduled jobs: rules and workflows with `schedule:` or `every:`.",
)
register_lazy("systemd", "clerk.commands.daemon:systemd", "systemd units for the daemon.")
register_lazy("run", "clerk.commands.runs:run", "Start a run of WORKFLOW.")
register_lazy("runs", "clerk.commands.runs:runs", "Inspect and control workflow runs.")


def main() -> None:  # pragma: no cover - the console script entry point is `cli`
    cli(prog_name="clerk")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
