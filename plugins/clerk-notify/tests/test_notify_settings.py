"""`plugins.settings.notify` through the `configure` hook."""

from __future__ import annotations

import pytest
from clerk_notify import configure
from clerk_notify.settings import DEFAULT_TIMEOUT, NotifySettings, current

from clerk.plugins.api import SpecError


def test_settings_are_kept_as_written() -> None:
    configure(
        settings={
            "urls": "${env:NOT_SET_YET}",  # one URL or a list; resolved only when sending
            "alert_urls": ["json://ops.example/${file:/run/ops-token}", "mailtos://u:p@x.org"],
            "timeout": "1m30s",
        }
    )
    assert current() == NotifySettings(
        urls=("${env:NOT_SET_YET}",),
        alert_urls=("json://ops.example/${file:/run/ops-token}", "mailtos://u:p@x.org"),
        timeout=90.0,
    )


def test_empty_settings_are_the_defaults() -> None:
    configure(settings={"urls": ["json://a/b"]})
    configure(settings={})
    assert current() == NotifySettings((), (), DEFAULT_TIMEOUT)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"alert_url": ["json://a/b"]}, "unknown setting 'alert_url'; did you mean 'alert_urls'"),
        ({"token": "x"}, r"unknown setting 'token' \(known: alert_urls, timeout, urls\)"),
        ({"urls": 5}, "notify urls: wants an apprise URL or a list"),
        ({"urls": ["json://a/b", ""]}, r"notify urls\[1\]: wants .* got an empty string"),
        ({"alert_urls": [{"url": "json://a/b"}]}, r"notify alert_urls\[0\]: wants .* got a dict"),
        ({"urls": "hooks.example.org/T0ps3cr3t"}, "notify urls: is not an apprise URL"),
        ({"timeout": "soon"}, "notify timeout: expected a duration"),
        ({"timeout": 0}, "notify timeout: must be more than 0s"),
        ({"timeout": True}, "notify timeout: wants a duration"),
    ],
)
def test_wrong_settings_are_refused(settings: dict[str, object], error: str) -> None:
    with pytest.raises(SpecError, match=error) as refused:
        configure(settings=settings)
    assert "T0ps3cr3t" not in str(refused.value)
    assert current() == NotifySettings()  # nothing half-applied
