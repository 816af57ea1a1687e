"""Alerts from `bas daemon`: a held run, a failed run, or no successful run for hours.

After every run the daemon asks ``Alerter.evaluate`` which problems are active; each is
sent once when it starts (webhook JSON POST and/or e-mail) and again every
``repeat_hours`` while it lasts, so a halted sync is noticed the same day without a
mail every run (every minute by default). Sending never raises: a failure is logged
and tried next time.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog

from provisioner.config import AlertsConfig, ConfigError, read_secret
from provisioner.core.nin import mask_text
from provisioner.core.states import RunStatus
from provisioner.service.status import Health, iso_to_epoch
from provisioner.state.common import now_iso

log = structlog.get_logger("bas.alerts")
_URL = re.compile(r"https?://[^\s'\")]+")


@dataclass(frozen=True)
class Alert:
    """One problem to tell about."""

    key: str  # what stays the same while the problem lasts, e.g. "held" or "no_success:feide"
    kind: str  # held | failed | no_success
    summary: str
    run_id: str | None = None
    target: str | None = None

    def payload(self, owner: str) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {
            "source": "bas",
            "owner": owner,
            "host": socket.gethostname(),
            "kind": self.kind,
            "summary": mask_text(self.summary),
            "run_id": self.run_id,
            "target": self.target,
            "at": now_iso(),
        }


def problems(health: Health, cfg: AlertsConfig, since: float, now: float) -> list[Alert]:
    """The problems active now (``since``: when watching started, for targets never successful)."""
    out = []
    if health.held:
        newest = health.held[0]
        out.append(
            Alert(
                "held",
                "held",
                f"run {newest['run_id']} is held by a safety rule ({', '.join(newest['targets'])}):"
                f" nothing is applied to those targets until `bas approve {newest['run_id']}`",
                newest["run_id"],
            )
        )
    last = health.last_run
    if last is not None and last["status"] in (RunStatus.FAILED, RunStatus.REFUSED):
        what = "was refused by the source gate" if last["status"] == RunStatus.REFUSED else "failed"
        out.append(
            Alert("failed", "failed", f"run {last['run_id']} {what}: {last['error'] or ''}", last["run_id"])
        )
    limit = cfg.no_success_hours * 3600
    for target, th in health.targets.items():
        ok = iso_to_epoch(th.last_success_at)
        if now - (ok if ok is not None else since) > limit:
            when = f"since {th.last_success_at[:19]}" if th.last_success_at else "since the daemon started"
            out.append(
                Alert(
                    f"no_success:{target}",
                    "no_success",
                    f"no successful run for {target} {when} (more than {cfg.no_success_hours:g} h)",
                    th.last_run,
                    target,
                )
            )
    return out


class Alerter:
    """Sends each active problem once, and again every repeat_hours while it lasts."""

    def __init__(self, cfg: AlertsConfig, base_dir: str, owner: str) -> None:
        self.cfg, self.base_dir, self.owner = cfg, base_dir, owner
        self.sent: dict[str, float] = {}  # alert key -> when last sent

    @property
    def enabled(self) -> bool:
        """Whether any channel is configured."""
        return bool(self.cfg.webhook_url or self.cfg.smtp_host)

    def evaluate(self, health: Health, since: float, now: float | None = None) -> list[Alert]:
        """Send what is newly (or still, after repeat_hours) wrong; returns the alerts sent."""
        now = now if now is not None else time.time()
        active = problems(health, self.cfg, since, now)
        keys = {a.key for a in active}
        for key in list(self.sent):
            if key not in keys:
                log.info("problem resolved", alert=key)
                del self.sent[key]
        due = [a for a in active if now - self.sent.get(a.key, -1e18) >= self.cfg.repeat_hours * 3600]
        for a in due:
            log.warning("alert", alert=a.key, summary=mask_text(a.summary), run_id=a.run_id)
            if self.enabled and self.send(a):
                self.sent[a.key] = now
            elif not self.enabled:
                self.sent[a.key] = now  # logged (the journal) is all there is
        return due

    def send(self, alert: Alert) -> bool:
        """Send one alert on every configured channel; True when all went out."""
        ok = True
        if self.cfg.webhook_url:
            try:
                resp = requests.post(
                    self.cfg.webhook_url, json=alert.payload(self.owner), timeout=self.cfg.timeout_seconds
                )
                resp.raise_for_status()
            except requests.RequestException as exc:
                ok = False
                log.error(
                    "alert webhook failed",
                    alert=alert.key,
                    webhook=webhook_origin(self.cfg.webhook_url),
                    error=_without_url(exc, self.cfg.webhook_url),
                )
        if self.cfg.smtp_host:
            try:
                self._mail(alert)
            except (OSError, smtplib.SMTPException, ConfigError) as exc:
                ok = False
                log.error("alert mail failed", alert=alert.key, error=str(exc))
        return ok

    def _mail(self, alert: Alert) -> None:
        c = self.cfg
        msg = EmailMessage()
        msg["Subject"] = f"BAS {self.owner}: {alert.kind.replace('_', ' ')}"
        msg["From"] = c.mail_from
        msg["To"] = ", ".join(c.mail_to)
        body = alert.payload(self.owner)
        msg.set_content("\n".join(f"{k}: {v}" for k, v in body.items() if v is not None))
        assert c.smtp_host is not None
        tls = ssl.create_default_context(cafile=c.smtp_ca_file)
        smtp = (
            smtplib.SMTP_SSL(c.smtp_host, c.smtp_port, timeout=c.timeout_seconds, context=tls)
            if c.smtp_ssl
            else smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=c.timeout_seconds)
        )
        with smtp:
            if c.smtp_starttls and not c.smtp_ssl:
                smtp.starttls(context=tls)
            if c.smtp_user and c.smtp_password_file:
                if not (c.smtp_ssl or c.smtp_starttls):
                    raise ConfigError("alerts: refusing to send the SMTP login without TLS")
                smtp.login(c.smtp_user, read_secret(c.smtp_password_file, self.base_dir))
            smtp.send_message(msg)


def webhook_origin(url: str | None) -> str:
    """scheme://host[:port] of the webhook: its path often carries the hook's secret token."""
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def _without_url(exc: Exception, url: str | None) -> str:
    """The error text with the webhook's URL (and any other URL requests quotes) cut to its origin."""
    text = str(exc)
    if url:
        text = text.replace(url, webhook_origin(url))
    return _URL.sub(lambda m: webhook_origin(m.group(0)), text)
