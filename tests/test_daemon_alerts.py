"""Alert decisions and the nightly run's misfire catch-up, without a daemon process."""

from __future__ import annotations

import datetime as dt

from apscheduler.triggers.cron import CronTrigger

from provisioner.config import AlertsConfig
from provisioner.service.alerts import Alerter, problems
from provisioner.service.daemon import previous_fire
from provisioner.service.status import Health, TargetHealth

NOW = dt.datetime(2025, 10, 1, 12, 0, tzinfo=dt.UTC).timestamp()


def _health(held: bool = False, last_status: str = "done", success_age_h: float | None = 1.0) -> Health:
    ok = (
        dt.datetime.fromtimestamp(NOW - success_age_h * 3600, dt.UTC).isoformat()
        if success_age_h is not None
        else None
    )
    return Health(
        last_run={
            "run_id": "r1",
            "kind": "sync",
            "status": last_status,
            "started_at": "",
            "finished_at": "",
            "error": "source: connection refused" if last_status == "failed" else None,
        },
        targets={"feide": TargetHealth("r1", "applied", "", ok)},
        held=[{"run_id": "r0", "started_at": "", "targets": ["feide"]}] if held else [],
        failed=[],
        failed_counts={},
    )


def test_problems() -> None:
    cfg = AlertsConfig(no_success_hours=6)
    assert problems(_health(), cfg, since=NOW - 86400, now=NOW) == []
    kinds = {a.kind for a in problems(_health(held=True, last_status="failed"), cfg, NOW - 86400, NOW)}
    assert kinds == {"held", "failed"}
    stale = problems(_health(success_age_h=7), cfg, since=NOW - 86400, now=NOW)
    assert [a.key for a in stale] == ["no_success:feide"]
    # Never successful: counted from when the daemon started watching.
    assert problems(_health(success_age_h=None), cfg, since=NOW - 3600, now=NOW) == []
    assert problems(_health(success_age_h=None), cfg, since=NOW - 7 * 3600, now=NOW)


def test_alerter_sends_once_per_problem_and_repeats(monkeypatch) -> None:  # noqa: ANN001
    sent: list[str] = []
    alerter = Alerter(AlertsConfig(webhook_url="http://127.0.0.1:9/x", repeat_hours=24), ".", "Demo")
    # Only the held alert is followed here (the fixed last success turns stale after 6 h too).
    monkeypatch.setattr(alerter, "send", lambda a: (a.key == "held" and sent.append(a.key)) or True)
    alerter.evaluate(_health(held=True), since=NOW, now=NOW)
    alerter.evaluate(_health(held=True), since=NOW, now=NOW + 900)
    assert sent == ["held"]
    alerter.evaluate(_health(held=True), since=NOW, now=NOW + 25 * 3600)
    assert sent == ["held", "held"]
    alerter.evaluate(_health(), since=NOW, now=NOW + 26 * 3600)  # resolved
    alerter.evaluate(_health(held=True), since=NOW, now=NOW + 27 * 3600)  # a new episode
    assert sent == ["held", "held", "held"]


def test_failed_webhook_is_retried_next_time() -> None:
    alerter = Alerter(
        AlertsConfig(webhook_url="http://127.0.0.1:9/nothing-listens", timeout_seconds=2), ".", "D"
    )
    assert alerter.evaluate(_health(held=True), since=NOW, now=NOW)  # due, but the POST failed
    assert alerter.evaluate(_health(held=True), since=NOW, now=NOW + 60)  # so still due


def test_previous_fire_for_the_missed_nightly_run() -> None:
    cron = CronTrigger.from_crontab("30 2 * * *", timezone="UTC")
    now = dt.datetime(2025, 10, 1, 9, 0, tzinfo=dt.UTC)
    assert previous_fire(cron, now) == dt.datetime(2025, 10, 1, 2, 30, tzinfo=dt.UTC)
    early = dt.datetime(2025, 10, 1, 1, 0, tzinfo=dt.UTC)
    assert previous_fire(cron, early) == dt.datetime(2025, 9, 30, 2, 30, tzinfo=dt.UTC)
