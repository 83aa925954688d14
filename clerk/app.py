"""What a CLI command works with: config, plugins, store, rules, fileops, engine.

Each is built on first use, so a command pays only for what it touches.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from clerk.errors import ConfigError, Problem

if TYPE_CHECKING:
    from sqlite_utils import Database

    from clerk.config import Config
    from clerk.engine.queue import RunSink
    from clerk.fileops import FileOps
    from clerk.plugins.manager import ClerkPluginManager, Registry
    from clerk.rules.engine import Engine
    from clerk.rules.model import RuleSet


class App:
    def __init__(self, config_file: str | None = None, profile: str | None = None):
        self.config_file = config_file
        self.profile = profile
        self.warnings: list[Problem] = []

    @cached_property
    def config(self) -> Config:
        from clerk.config import load_config

        return load_config(self.config_file, self.profile)

    @cached_property
    def pm(self) -> ClerkPluginManager:
        from clerk.plugins.manager import make_plugin_manager

        plugins = self.config.settings.plugins
        return make_plugin_manager(
            allow=plugins.allow,
            deny=plugins.deny,
            autoload=plugins.autoload,
            plugins_dir=self.config.plugins_dir,
            strict=plugins.strict,
            settings=plugins.settings,
        )

    @property
    def registry(self) -> Registry:
        return self.pm.registry()

    def db(self, *, readonly: bool = False) -> Database:
        from clerk.store import open_store

        return open_store(self.config.store_path, readonly=readonly)

    @cached_property
    def store(self) -> Database:
        return self.db()

    def check(self, root_overrides: dict[str, str] | None = None) -> tuple[RuleSet, list[Problem]]:
        """Load the rules and run every check; problems sorted by place."""
        from clerk.rules.check import load_and_check

        ruleset, problems = load_and_check(
            self.config, self.registry, check_paths=True, root_overrides=root_overrides
        )
        problems += [Problem(_plugin_location(), str(f)) for f in self.pm.failures]
        problems += [Problem(_plugin_location(), e) for e in self.registry.errors]
        return ruleset, problems

    def rules(self, root_overrides: dict[str, str] | None = None) -> RuleSet:
        """The rule set, or ConfigError listing every error (warnings kept aside).

        Root paths are not checked here: a command that walks a root says so itself.
        """
        from clerk.rules.check import load_and_check

        ruleset, problems = load_and_check(
            self.config, self.registry, check_paths=False, root_overrides=root_overrides
        )
        errors = [p for p in problems if p.severity == "error"]
        self.warnings = [p for p in problems if p.severity != "error"]
        if errors:
            raise ConfigError(errors)
        return ruleset

    def fileops(self, ruleset: RuleSet, *, dry_run: bool = False) -> FileOps:
        from clerk.fileops import FileOps

        trash = self.config.settings.trash_dir
        return FileOps(
            self.store,
            ruleset.roots,
            trash_dir=str(trash.expanduser()) if trash else None,
            dry_run=dry_run,
        )

    def recover(self, ruleset: RuleSet) -> list[Any]:
        """Finish or roll back operations a crash left half done (before acting again)."""
        results = self.fileops(ruleset).recover()
        if results:
            from clerk.store.catalog import Catalog

            with self.store.atomic():
                Catalog(self.store).apply_results(results, ruleset.roots)
        return results

    def engine(
        self,
        ruleset: RuleSet,
        *,
        dry_run: bool = False,
        run_sink: RunSink | None = None,
        **kwargs: Any,
    ) -> Engine:
        """The rules engine for `ruleset`. `run_sink`: where its `run:` actions put their
        runs; by default this app's store, with a detached worker to execute them."""
        from clerk.engine.queue import StoreRuns
        from clerk.rules.engine import Engine

        if run_sink is None:
            run_sink = StoreRuns(self, ruleset.workflows)
        return Engine(
            ruleset,
            self.registry,
            self.store,
            fileops=self.fileops(ruleset, dry_run=dry_run),
            hooks=self.pm,
            dry_run=dry_run,
            batch_size=self.config.settings.journal_batch,
            run_sink=run_sink,
            **kwargs,
        )


def _plugin_location() -> Any:
    from clerk.errors import Location

    return Location("<plugins>")


def parse_root_overrides(values: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            from clerk.errors import ClerkError

            raise ClerkError(f"--root wants NAME=PATH, got {value!r}")
        overrides[name] = os.path.abspath(os.path.expanduser(path))
    return overrides
