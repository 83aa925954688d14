"""`clerk init`: a commented starter config and rule file."""

from __future__ import annotations

from pathlib import Path

from clerk.config import Paths

CONFIG = """\
# clerk settings. Every key is optional; the values shown are the defaults.
# Reference: docs/configuration.md

# Where the SQLite store lives (catalog, journal, run history).
# store: {data_dir}/clerk.db

# Rule files: a list of files or directories; default: rules.d/ next to this file.
# rules: [{rules_dir}]

# Operations journaled per commit during a scan.
# journal_batch: 500

# Plugins: allow-list, deny-list, a directory of loose .py plugins, autoload switch.
# plugins: {{allow: null, deny: [], dir: null, autoload: true, strict: false}}

# Where trashed files go (default: the freedesktop trash of the file's file system).
# trash_dir: null

# log_level: info
# reconcile_interval: 10m

# Profiles overlay the settings above: clerk --profile dev ...
# profiles:
#   dev: {{log_level: debug}}
"""

RULES = """\
# Starter rules: sort ~/Downloads. Check with `clerk check`, preview with
# `clerk scan --dry-run`, undo anything with `clerk undo --last 1`.
# Reference: docs/rules.md
roots:
  downloads: {{path: ~/Downloads, recursive: false, settle: 5s}}
  documents: {{path: ~/Documents, watch: false}}
  pictures: {{path: ~/Pictures, watch: false}}

rules:
  - name: pictures
    in: downloads
    match:
      - mime: image/*
    actions:
      - move: "~/Pictures/{{mtime:%Y}}/{{mtime:%m}}/{{name}}"
        on_conflict: rename

  - name: pdfs
    in: downloads
    match: [{{extension: pdf}}]
    actions:
      - move: "~/Documents/PDF/{{name}}"

  - name: stale-installers
    in: downloads
    schedule: "0 3 * * *"
    match: [{{extension: [deb, rpm, iso, AppImage, dmg, exe, msi]}}, {{age: "> 30d"}}]
    actions: [{{trash: {{}}}}]
"""


def write_starter(paths: Paths, *, force: bool = False) -> list[tuple[Path, str]]:
    written = []
    files = {
        paths.config_file: CONFIG.format(data_dir=paths.data_dir, rules_dir=paths.rules_dir),
        paths.rules_dir / "starter.yaml": RULES.format(),
    }
    for path, text in files.items():
        if path.exists() and not force:
            written.append((path, "kept (exists; --force to replace)"))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append((path, "wrote"))
    return written
