"""The control socket: `clerk status / reload / pause / resume / stop`, and who may ask."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_daemon_support import files_under, running_daemon, wait_until, write_config

from clerk.daemon.control import request

Clerk = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # a short path anyone may traverse, so that only the socket's own mode and the
    # daemon's uid check stand between another user and the daemon
    directory = Path(tempfile.mkdtemp(prefix="clerk-ctl-"))
    directory.chmod(0o755)
    yield directory
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()


@pytest.fixture
def setup(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path], socket_dir: Path
) -> tuple[Path, Path, Path]:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    archive.mkdir()
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}, settle: 0.3s}}\n"
        f"  archive: {{path: {archive}, watch: false}}\nrules:\n  - name: text\n"
        f"    in: inbox\n    match: [{{extension: txt}}]\n"
        f"    actions: [{{move: '{archive}/{{name}}'}}]\n"
    )
    sock = socket_dir / "clerk.sock"
    write_config(clerk_home, f"reconcile_interval: 1h\ncontrol_socket: {sock}\n")
    return inbox, archive, sock


def test_status_reload_pause_resume_stop(
    setup: tuple[Path, Path, Path], tmp_path: Path, clerk: Clerk
) -> None:
    inbox, archive, sock = setup
    down = clerk("status")
    assert down.returncode == 3 and "not running" in down.stdout
    with running_daemon(tmp_path) as (daemon, notify):
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        result = clerk("status", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        status = json.loads(result.stdout)
        assert status["state"] == "READY" and status["pid"] == daemon.pid
        assert {r["name"]: r["watch"] for r in status["roots"]} == {
            "inbox": "watching",
            "archive": "not watched",
        }
        assert status["queue"] == 0 and status["uptime"] >= 0
        human = clerk("status")
        assert human.returncode == 0 and "state: READY" in human.stdout
        assert re.search(r"^pid \d+, up \d+(ms|s|m \d+s)$", human.stdout, re.MULTILINE)

        assert clerk("pause", check=True).stdout.strip() == "paused"
        (inbox / "waits.txt").write_text("arrived while paused")
        # polled in-process (the socket client the CLI uses): a CLI start per poll is slow
        wait_until(lambda: request(sock, "status")["queue"] >= 1, what="the arrival queued")
        assert request(sock, "status")["paused"] is True
        assert files_under(archive) == []
        assert clerk("resume", check=True).stdout.strip() == "resumed"
        wait_until(lambda: files_under(archive) == ["waits.txt"], what="handled after resume")
        wait_until(lambda: request(sock, "status")["ops_per_minute"] >= 1, what="the move counted")

        mark = len(notify)
        assert clerk("reload", check=True).stdout.strip() == "reloaded"
        notify.wait_for("RELOADING", after=mark)

        assert clerk("stop", check=True).returncode == 0
        assert daemon.wait() == 0
    assert not sock.exists()


def test_reload_reports_broken_rules(
    setup: tuple[Path, Path, Path], tmp_path: Path, clerk: Clerk, write_rules: Callable[[str], Path]
) -> None:
    sock = setup[2]
    with running_daemon(tmp_path) as (daemon, _):
        write_rules("roots: {}\nrules:\n  - name: r\n    in: nowhere\n", "zz-broken.yaml")
        result = clerk("reload")
        said = f"{result.stdout}\n{result.stderr}\ndaemon log:\n{daemon.log()}"
        assert result.returncode == 1, said
        assert "reload refused" in result.stderr and "nowhere" in result.stderr, said
        status = request(sock, "status")
        assert status["state"] == "READY", status
        assert any("reload refused" in e["error"] for e in status["last_errors"]), status
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


def test_a_second_daemon_refuses_to_start(
    setup: tuple[Path, Path, Path], tmp_path: Path, clerk: Clerk
) -> None:
    with running_daemon(tmp_path) as (daemon, _):
        second = clerk("daemon")
        assert second.returncode == 1 and "another clerk daemon is running" in second.stderr
        assert clerk("status").returncode == 0  # the first one still answers
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


ASK_AS_NOBODY = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
s.sendall(b'{"cmd": "stop"}\\n')
print(s.makefile().readline().strip())
"""


def _ask(as_nobody: Callable[..., subprocess.CompletedProcess[str]], sock: Path) -> str:
    result = as_nobody(ASK_AS_NOBODY, str(sock))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_uid_is_refused(
    setup: tuple[Path, Path, Path],
    tmp_path: Path,
    clerk: Clerk,
    as_nobody: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    _, _, sock = setup
    with running_daemon(tmp_path) as (daemon, _):
        assert _ask(as_nobody, sock) == "EACCES"  # first fence: the socket's mode
        sock.chmod(0o666)  # as if someone loosened it: the uid check still holds
        reply = json.loads(_ask(as_nobody, sock))
        assert reply["ok"] is False and "permission denied" in reply["error"]
        assert clerk("status").returncode == 0  # the stop was not obeyed
        assert "refused peer uid" in daemon.log()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
