"""The `alert` hook: every alert goes to `alert_urls`, called the way clerk calls it."""

from __future__ import annotations

import clerk_notify
import pytest
from clerk_notify import NotifyError, configure
from conftest import Receiver

from clerk.engine.alerts import Alert
from clerk.plugins.manager import make_plugin_manager


def _alert() -> Alert:
    return Alert("slow-ocr", "duration > 1s", 2.5, 1.0, workflow="ocr", run_id=7)


def test_an_alert_is_sent_to_the_alert_urls(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_URL", receiver.url("json", "/alerts/T0ps3cr3t"))
    configure(settings={"alert_urls": ["${env:ALERT_URL}"], "urls": [receiver.url("json", "/x")]})
    pm = make_plugin_manager(autoload=False)
    pm.register(clerk_notify, name="notify")
    pm.check_pending()  # the hook implementations match clerk's hook specs
    pm.hook.alert(alert=_alert())
    [got] = receiver.wait_for(1)
    assert got.path == "/alerts/T0ps3cr3t"  # alert_urls, not the action's urls
    posted = got.fields()
    assert posted["title"] == "clerk alert: slow-ocr"
    assert posted["message"] == "alert slow-ocr: ocr: duration > 1s; measured 2.5 (run 7)"
    assert posted["type"] == "warning"


def test_without_alert_urls_nothing_is_sent(receiver: Receiver) -> None:
    configure(settings={"urls": [receiver.url("json", "/actions-only")]})
    clerk_notify.alert(alert=_alert())
    assert receiver.requests == []


def test_a_failed_alert_raises_without_the_secret(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_URL", f"json://127.0.0.1:{closed_port}/alerts/T0ps3cr3t")
    configure(settings={"alert_urls": ["${env:ALERT_URL}"], "timeout": "2s"})
    with pytest.raises(NotifyError, match=r"\$\{env:ALERT_URL\}: .*(?i:connection)") as failed:
        clerk_notify.alert(alert=_alert())
    assert "T0ps3cr3t" not in str(failed.value)
