"""The `notify` action against a real local HTTP endpoint (apprise json:// and form://)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from clerk_notify import Notify, NotifyError, configure
from conftest import Receiver, make_target

from clerk.plugins.api import SpecError

SECRET_PATH = "/hook/T0ps3cr3t-t0ken"  # a made-up token the tests look for


def test_renders_and_sends_title_and_body(tmp_path: Path, receiver: Receiver) -> None:
    target = make_target(tmp_path)
    options = {"title": "Scan: {stem}", "url": receiver.url("json", "/hook"), "type": "success"}
    action = Notify("New scan: {name} in {dir}", options)
    note = action.apply(target)
    [got] = receiver.wait_for(1)
    assert got.path == "/hook"
    posted = got.fields()
    assert posted["title"] == "Scan: scan 1"
    assert posted["message"] == f"New scan: scan 1.pdf in {tmp_path / 'inbox'}"
    assert posted["type"] == "success"
    assert note == f"notified json://127.0.0.1:{receiver.port}/…"


def test_sends_to_every_url_of_a_list(tmp_path: Path, receiver: Receiver) -> None:
    urls = [receiver.url("json", "/a"), receiver.url("form", "/b")]
    Notify("{name} arrived", {"url": urls}).apply(make_target(tmp_path, "x.txt"))
    got = {r.path: r.fields() for r in receiver.wait_for(2)}
    assert got["/a"]["message"] == got["/b"]["message"] == "x.txt arrived"
    assert got["/a"]["title"] == got["/b"]["title"] == "clerk: x.txt"  # the default title


def test_secret_url_is_resolved_at_send_time_and_never_shown(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    action = Notify("got {name}", {"url": "${env:NOTIFY_URL}"})  # no value needed yet
    monkeypatch.setenv("NOTIFY_URL", receiver.url("json", SECRET_PATH))
    target = make_target(tmp_path)
    described = action.describe(target)
    note = action.apply(target)
    assert receiver.wait_for(1)[0].path == SECRET_PATH
    assert described == "notify ${env:NOTIFY_URL}: 'got scan 1.pdf'"
    assert note == "notified ${env:NOTIFY_URL}"


def test_secret_inside_a_url_is_resolved(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "T0ps3cr3t-t0ken")
    action = Notify("hi", {"url": receiver.url("json", "/hook/${env:HOOK_TOKEN}")})
    described = action.describe(make_target(tmp_path))
    action.apply(make_target(tmp_path))
    assert receiver.wait_for(1)[0].path == SECRET_PATH
    assert "T0ps3cr3t" not in described and "${env:HOOK_TOKEN}" in described


def test_a_failing_endpoint_gives_a_clear_error_without_the_secret(
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # like clerk -vv: apprise logs the URLs it posts to
    monkeypatch.setenv("NOTIFY_URL", receiver.url("json", "/fail" + SECRET_PATH))
    action = Notify("x", {"url": "${env:NOTIFY_URL}"})
    with pytest.raises(NotifyError) as failed:
        action.apply(make_target(tmp_path))
    message = str(failed.value)
    assert receiver.wait_for(1)[0].path == "/fail" + SECRET_PATH  # it was really tried
    assert message.startswith("notification not sent (0 of 1 delivered): ${env:NOTIFY_URL}: ")
    assert "500" in message
    assert "T0ps3cr3t" not in message
    assert "POST URL: http://***" in caplog.text  # apprise's own debug line, redacted
    assert "T0ps3cr3t" not in caplog.text


def test_a_closed_port_gives_a_clear_error_without_the_secret(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_URL", f"form://127.0.0.1:{closed_port}{SECRET_PATH}")
    with pytest.raises(NotifyError, match=r"(?i)connection error") as failed:
        Notify("x", {"url": "${env:NOTIFY_URL}"}).apply(make_target(tmp_path))
    assert "T0ps3cr3t" not in str(failed.value)
    assert str(closed_port) not in str(failed.value)


def test_one_failure_does_not_stop_the_other_urls(
    tmp_path: Path, receiver: Receiver, closed_port: int
) -> None:
    urls = [f"json://127.0.0.1:{closed_port}/x", receiver.url("json", "/ok")]
    with pytest.raises(NotifyError, match=r"\(1 of 2 delivered\)"):
        Notify("x", {"url": urls}).apply(make_target(tmp_path))
    assert [r.path for r in receiver.wait_for(1)] == ["/ok"]


def test_an_unresolvable_secret_names_the_reference(tmp_path: Path) -> None:
    with pytest.raises(NotifyError, match=r"cannot resolve \$\{env:NOT_SET_ANYWHERE\}"):
        Notify("x", {"url": "${env:NOT_SET_ANYWHERE}"}).apply(make_target(tmp_path))


def test_a_url_apprise_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(NotifyError, match="not a URL apprise understands") as failed:
        Notify("x", {"url": "nosuchservice://host/T0ps3cr3t"}).apply(make_target(tmp_path))
    assert "T0ps3cr3t" not in str(failed.value)


def test_urls_default_to_the_settings(tmp_path: Path, receiver: Receiver) -> None:
    with pytest.raises(SpecError, match="needs a destination"):
        Notify("x")
    configure(settings={"urls": [receiver.url("json", "/default")]})
    Notify("from settings: {name}").apply(make_target(tmp_path))
    assert receiver.wait_for(1)[0].fields()["message"] == "from settings: scan 1.pdf"


@pytest.mark.parametrize(
    ("value", "options", "error"),
    [
        ("", {"url": "json://h/p"}, "notify wants a message"),
        (["a"], {"url": "json://h/p"}, "notify wants a message"),
        ("{name!r}", {"url": "json://h/p"}, "conversions"),
        ("x", {"url": "json://h/p", "title": 3}, "notify title wants a title"),
        ("x", {"url": 5}, "wants an apprise URL"),
        ("x", {"url": []}, "an empty list sends nowhere"),
        ("x", {"url": "not a url/secret"}, "is not an apprise URL"),
        ("x", {"url": "json://h/p", "format": "rtf"}, "format must be one of text, markdown"),
        ("x", {"url": "json://h/p", "type": "panic"}, "type must be one of info"),
    ],
)
def test_bad_rule_values_are_refused(value: object, options: dict[str, object], error: str) -> None:
    with pytest.raises(SpecError, match=error):
        Notify(value, options)


def test_templates_are_reported_for_clerk_check() -> None:
    action = Notify("{name} in {dir}", {"url": "json://h/p", "title": "{root}"})
    assert action.templates() == ["{name} in {dir}", "{root}"]
    assert action.path_templates() == []
    assert Notify.options == {"title", "url", "format", "type"}


def test_describe_never_shows_a_literal_url_path(tmp_path: Path) -> None:
    action = Notify("x" * 100, {"url": "json://user:pw1234@example.org/T0ps3cr3t"})
    described = action.describe(make_target(tmp_path))
    assert described == f"notify json://example.org/…: '{'x' * 59}…'"


def test_the_timeout_setting_bounds_a_silent_endpoint(tmp_path: Path) -> None:
    import socket
    import time

    import apprise  # noqa: F401 (imported before the clock starts)

    configure(settings={"timeout": "0.5s"})
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # connections complete in the backlog; nothing ever answers
    try:
        url = f"json://127.0.0.1:{silent.getsockname()[1]}/x"
        started = time.monotonic()
        with pytest.raises(NotifyError):
            Notify("x", {"url": url}).apply(make_target(tmp_path))
        assert time.monotonic() - started < 3.5  # apprise's own default waits 4s
    finally:
        silent.close()
