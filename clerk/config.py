"""Settings, where files live, profiles and secret references.

Where things live:
- `$CLERK_HOME` set: everything under it (`config.yaml`, `rules.d/`, `clerk.db`, `run/`).
- `--config FILE` (or `$CLERK_CONFIG`): that file; `rules.d/` beside it; data and
  state in the XDG dirs unless the file says otherwise.
- Otherwise the XDG dirs through platformdirs (`~/.config/clerk`, `~/.local/share/clerk`,
  `~/.local/state/clerk`, `$XDG_RUNTIME_DIR/clerk`).
The system service sets `CLERK_CONFIG=/etc/clerk/config.yaml` and `store:
/var/lib/clerk/clerk.db` (see docs/operations.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clerk.errors import ConfigError, Location, Problem
from clerk.secrets import SecretError, has_secret_refs, redact, resolve_secrets
from clerk.units import parse_duration

CONFIG_NAME = "config.yaml"
RULES_DIR_NAME = "rules.d"


@dataclass(frozen=True)
class Paths:
    """The directories clerk uses, resolved once per process."""

    config_file: Path
    rules_dir: Path
    data_dir: Path
    state_dir: Path
    runtime_dir: Path

    @classmethod
    def discover(cls, config_file: Path | str | None = None) -> Paths:
        explicit = config_file or os.environ.get("CLERK_CONFIG")
        home = os.environ.get("CLERK_HOME")
        if home:
            base = Path(home).expanduser().absolute()
            cfg = Path(explicit).expanduser().absolute() if explicit else base / CONFIG_NAME
            return cls(cfg, cfg.parent / RULES_DIR_NAME, base, base / "state", base / "run")
        import platformdirs

        dirs = platformdirs.PlatformDirs("clerk", appauthor=False)
        if explicit:
            cfg = Path(explicit).expanduser().absolute()
        else:
            cfg = Path(dirs.user_config_dir) / CONFIG_NAME
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        runtime_dir = Path(runtime) / "clerk" if runtime else Path(dirs.user_state_dir) / "run"
        return cls(
            cfg,
            cfg.parent / RULES_DIR_NAME,
            Path(dirs.user_data_dir),
            Path(dirs.user_state_dir),
            runtime_dir,
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginSettings(_Strict):
    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)
    dir: Path | None = None
    autoload: bool = True
    strict: bool = False
    # per-plugin settings, by plugin name, handed to that plugin's `configure` hook
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Settings(_Strict):
    """Daemon and CLI settings from config.yaml (every key optional)."""

    store: Path | None = None
    rules: list[Path] = Field(default_factory=list)
    concurrency: int = Field(default=4, ge=1, le=256)
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    reconcile_interval: float = 600.0
    control_socket: Path | None = None
    http_listen: str | None = None
    trash_dir: Path | None = None
    journal_batch: int = Field(default=500, ge=1, le=10_000)
    # alert conditions on run metrics, e.g. "failure_rate > 0.2 over 10m" (docs/workflows.md)
    alerts: list[str | dict[str, Any]] = Field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("reconcile_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


@dataclass
class Config:
    """Settings plus the paths they resolve to; what every command works from."""

    settings: Settings
    paths: Paths
    profile: str | None = None

    @property
    def store_path(self) -> Path:
        return (
            _expand(self.settings.store)
            if self.settings.store
            else self.paths.data_dir / "clerk.db"
        )

    @property
    def rule_files(self) -> list[Path]:
        """Rule files in load order: `rules:` entries (files or dirs), else `rules.d/*.yaml`."""
        sources = [_expand(p) for p in self.settings.rules] or [self.paths.rules_dir]
        files: list[Path] = []
        for source in sources:
            if source.is_dir():
                files.extend(sorted([*source.glob("*.yaml"), *source.glob("*.yml")]))
            elif source.exists() or source.suffix in (".yaml", ".yml"):
                files.append(source)  # a missing file is reported by the loader
        return files

    @property
    def socket_path(self) -> Path:
        if self.settings.control_socket:
            return _expand(self.settings.control_socket)
        return self.paths.runtime_dir / "clerk.sock"

    @property
    def plugins_dir(self) -> Path | None:
        return _expand(self.settings.plugins.dir) if self.settings.plugins.dir else None


def _expand(path: Path) -> Path:
    return Path(os.path.expandvars(str(path))).expanduser()


def load_config(config_file: Path | str | None = None, profile: str | None = None) -> Config:
    """Read config.yaml (missing file = defaults), apply the profile, validate.

    Raises `ConfigError` with file:line:col problems.
    """
    from clerk.yamlsrc import load_documents, plain

    paths = Paths.discover(config_file)
    profile = profile or os.environ.get("CLERK_PROFILE") or None
    raw: Any = {}
    node: Any = None
    file = str(paths.config_file)
    if paths.config_file.exists():
        docs, problems = load_documents(paths.config_file)
        if problems:
            raise ConfigError(problems)
        node = docs[0] if docs else {}
        raw = plain(node)
        if not isinstance(raw, dict):
            raise ConfigError([Problem(Location(file, 1, 1), "config must be a mapping")])
    elif config_file is not None:
        raise ConfigError([Problem(Location(file), "config file does not exist")])
    data = dict(raw)
    profiles = data.get("profiles") or {}
    if profile:
        if not isinstance(profiles, dict) or profile not in profiles:
            known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else ""
            raise ConfigError(
                [Problem(Location(file), f"unknown profile {profile!r} (known: {known or 'none'})")]
            )
        data = _deep_merge(data, profiles[profile] or {})
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(pydantic_problems(exc, file, node)) from None
    return Config(settings, paths, profile)


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def pydantic_problems(exc: ValidationError, file: str, node: Any) -> list[Problem]:
    """Map pydantic errors to file:line:col by walking the ruamel node along `loc`."""
    from clerk.yamlsrc import key_location, node_location

    problems = []
    for err in exc.errors():
        where, parent, current = Location(file), None, node
        path = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]
        for part in path:
            parent = current
            try:
                current = current[part] if current is not None else None
            except (KeyError, IndexError, TypeError):
                current = None
            if parent is not None:
                where = key_location(file, parent, part)
            if current is None:
                break
        if current is not None and not path:
            where = node_location(file, current)
        dotted = ".".join(str(p) for p in path)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown setting {dotted!r}"
        elif dotted:
            message = f"{dotted}: {message}"
        problems.append(Problem(where, message))
    return problems


__all__ = [
    "Config",
    "Paths",
    "SecretError",
    "Settings",
    "has_secret_refs",
    "load_config",
    "redact",
    "resolve_secrets",
]
