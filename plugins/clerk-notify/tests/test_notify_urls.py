"""What may be shown of a URL, and which secret values a send must hide."""

from __future__ import annotations

import pytest
from clerk_notify.urls import display_url, resolve, secret_pieces

from clerk.secrets import SecretError, redact


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("${env:SLACK_URL}", "${env:SLACK_URL}"),
        (" ${file:/run/url} ", "${file:/run/url}"),
        ("${env:BASE}${env:TOKEN}", "${env:BASE}${env:TOKEN}"),
        ("json://hooks.example.org/T0ps3cr3t", "json://hooks.example.org/…"),
        ("json://hooks.example.org", "json://hooks.example.org"),
        ("mailtos://me:pa55word@mail.example.org?to=x@y.z", "mailtos://mail.example.org/…"),
        ("json://h.example/${env:TOKEN}", "json://h.example/… (with ${env:TOKEN})"),
        ("slack://${env:A}/${env:B}", "slack://…/… (with ${env:A}, ${env:B})"),
        ("${env:SCHEMA}://host/x", "<a URL with ${env:SCHEMA}>"),
        ("no url here", "<not a URL>"),
    ],
)
def test_display_url_never_shows_paths_credentials_or_values(raw: str, shown: str) -> None:
    assert display_url(raw) == shown


def test_every_piece_a_service_may_echo_is_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    hook_url = "json://user:pa55word@hooks.example.org:8443/services/T0ps3cr3t?key=K3yValue"
    monkeypatch.setenv("HOOK_URL", hook_url)
    resolved = resolve("${env:HOOK_URL}")
    assert resolved.url == hook_url
    assert resolved.secrets[0] == hook_url  # longest first: whole values before their parts
    for echoed in (
        "http://user:pa55word@hooks.example.org:8443/services/T0ps3cr3t?key=K3yValue",
        "Connection error sending to hooks.example.org.",
        "url: /services/T0ps3cr3t?key=K3yValue",
        "auth pa55word token T0ps3cr3t K3yValue",
    ):
        hidden = redact(echoed, list(resolved.secrets))
        for part in ("pa55word", "T0ps3cr3t", "K3yValue", "hooks.example.org"):
            assert part not in hidden, hidden


def test_a_literal_url_has_no_secrets_and_a_missing_one_fails() -> None:
    assert resolve("json://h.example/x").secrets == ()
    with pytest.raises(SecretError, match=r"cannot resolve \$\{env:NOT_SET_ANYWHERE\}"):
        resolve("json://h.example/${env:NOT_SET_ANYWHERE}")


def test_short_pieces_are_left_alone() -> None:
    # clerk.secrets.redact ignores values under 4 characters: hiding "a" would mangle text
    assert secret_pieces("json://a/bb") == {"json://a/bb", "a/bb"}
