from __future__ import annotations

from pathlib import Path

import pytest

from clerk.config import Paths, load_config, redact, resolve_secrets
from clerk.errors import ConfigError


def test_clerk_home_holds_everything(clerk_home: Path) -> None:
    paths = Paths.discover()
    assert paths.config_file == clerk_home / "config.yaml"
    assert paths.rules_dir == clerk_home / "rules.d"
    config = load_config()
    assert config.store_path == clerk_home / "clerk.db"
    assert config.socket_path == clerk_home / "run" / "clerk.sock"


def test_xdg_dirs_without_clerk_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLERK_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    paths = Paths.discover()
    assert paths.config_file == tmp_path / "cfg" / "clerk" / "config.yaml"
    assert paths.data_dir == tmp_path / "data" / "clerk"


def test_explicit_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "config.yaml"
    cfg.parent.mkdir()
    cfg.write_text("concurrency: 8\nstore: /tmp/x.db\n")
    config = load_config(cfg)
    assert config.settings.concurrency == 8
    assert config.store_path == Path("/tmp/x.db")
    assert config.rule_files == []  # rules.d beside it does not exist
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_errors_point_at_the_line(clerk_home: Path) -> None:
    (clerk_home / "config.yaml").write_text(
        "log_level: info\nconcurency: 4\nplugins:\n  alow: [x]\nreconcile_interval: soon\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config()
    text = str(err.value)
    assert "config.yaml:2:1: unknown setting 'concurency'" in text
    assert "config.yaml:4:3: unknown setting 'plugins.alow'" in text
    assert "config.yaml:5:1:" in text and "duration" in text


def test_profiles_overlay(clerk_home: Path) -> None:
    (clerk_home / "config.yaml").write_text(
        "log_level: info\nplugins: {deny: [a]}\n"
        "profiles:\n  dev: {log_level: debug, plugins: {autoload: false}}\n"
    )
    assert load_config().settings.log_level == "info"
    dev = load_config(profile="dev").settings
    assert dev.log_level == "debug"
    assert dev.plugins.autoload is False and dev.plugins.deny == ["a"]
    with pytest.raises(ConfigError, match="unknown profile 'prod'"):
        load_config(profile="prod")


def test_secret_references(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    (tmp_path / "pw").write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    text = f"a=${{env:TOKEN}} b=${{file:{tmp_path}/pw}} c=${{credential:api}}"
    assert resolve_secrets(text) == "a=s3cr3t-value b=from-file c=from-systemd"
    with pytest.raises(ConfigError, match="cannot resolve"):
        resolve_secrets("${env:NOPE_NOT_SET}")
    assert redact("token s3cr3t-value here", ["s3cr3t-value"]) == "token *** here"
