"""Alerts: rules over order changes and pipeline health, one alert per incident, delivered to sinks.

Raising stores the alert (once per dedupe window, by its key) and writes the log line, the sink that
is always there; a Celery task then delivers it to the webhook, Slack and e-mail sinks configured in
the `[alerts]` table, with retries. Sink URLs come from configuration only, never from a push.
"""
from __future__ import annotations

import json
import logging
import smtplib
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import requests
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from receiver.config import AlertSettings
from receiver.errors import TransientProviderError
from receiver.models import Alert, AlertStatus, utcnow
from receiver.money import yuan_digits
from receiver.orders import Change
from receiver.publisher import ProcessThread
from receiver.services import Services

log = logging.getLogger("receiver.alerts")
DELIVER_TASK = "workers.tasks.deliver_alert"
_INSERT: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def raise_alert(
    svc: Services, rule: str, key: str, title: str, detail: dict[str, Any], source: str | None = None, order_id: str | None = None
) -> int | None:
    """Store and log an alert unless its rule is off or the same incident was raised within the
    dedupe window; queue its delivery. Return its id, or None when nothing was raised."""
    alerts = svc.settings.alerts
    if not alerts.rules[rule].enabled:
        return None
    window = max(1, alerts.dedupe_window)
    bucket = int(time.time() // window)  # one alert per key and window, enforced by a unique key
    values = {
        "rule": rule,
        "source": source,
        "order_id": order_id,
        "dedupe_key": f"{rule}:{key}:{bucket}"[:255],
        "title": title,
        "detail": json.dumps(detail, sort_keys=True, default=str),
        "created_at": utcnow(),
        "status": AlertStatus.PENDING,
        "sinks": "",
        "attempts": 0,
    }
    stmt = _INSERT[svc.engine.dialect.name](Alert).on_conflict_do_nothing().values(**values).returning(Alert.id)
    with svc.engine.begin() as conn:
        alert_id = conn.execute(stmt).scalar()
    if alert_id is None:
        return None
    log.warning("alert.%s source=%s order=%s %s", rule, source or "-", order_id or "-", title)
    if sinks(alerts):
        try:
            current_app.extensions["celery"].send_task(DELIVER_TASK, args=[alert_id], retry=False)
        except Exception:  # noqa: BLE001 - the alert is stored and logged; the sweep delivers it later
            log.warning("alert.enqueue_failed alert=%s", alert_id)
    return alert_id


def order_alerts(svc: Services, source: str, order_id: str, currency: str, changes: Sequence[Change]) -> list[int]:
    """Raise the alerts a re-fetch's changes call for: price corrected, refund, closed."""
    rules = svc.settings.alerts.rules
    raised: list[int | None] = []
    by_field = {c.field: c for c in changes if c.old is not None}
    if (c := by_field.get("total_amount")) and c.old:
        percent = (c.new - c.old) * 100 / c.old
        if abs(percent) >= rules["price_corrected"].threshold:
            old, new = yuan_digits(c.old), yuan_digits(c.new)
            title = f"Price corrected on {source} order {order_id}: {old} -> {new} {currency} ({percent:+.2f}%)"
            detail = {"old_total": c.old, "new_total": c.new, "percent": round(percent, 2), "currency": currency}
            raised.append(raise_alert(svc, "price_corrected", f"{source}:{order_id}:{c.new}", title, detail, source, order_id))
    if (c := by_field.get("refund_amount")) and c.new > c.old and c.new - c.old >= rules["refund"].threshold:
        refunded, total = yuan_digits(c.new - c.old), yuan_digits(c.new)
        title = f"Refund on {source} order {order_id}: {refunded} {currency} (total refunded {total})"
        detail = {"refunded": c.new - c.old, "total_refunded": c.new, "currency": currency}
        raised.append(raise_alert(svc, "refund", f"{source}:{order_id}:{c.new}", title, detail, source, order_id))
    if (c := by_field.get("status")) and c.new in ("cancelled", "closed"):
        title = f"Order {order_id} at {source} is {c.new} (was {c.old})"
        raised.append(
            raise_alert(svc, "order_closed", f"{source}:{order_id}", title, {"old": c.old, "new": c.new}, source, order_id)
        )
    return [a for a in raised if a is not None]


def note_rejections(svc: Services, source: str, minute: int, refused: int) -> None:
    """Count `refused` pushes of one minute; the push_rejections alert fires when the minute crosses the rule."""
    key = svc.key("rejections", source, str(minute))
    try:
        pipe = svc.redis.pipeline()
        pipe.incrby(key, refused)
        pipe.expire(key, 120)
        count, _ = pipe.execute()
    except RedisError:
        return
    threshold = int(svc.settings.alerts.rules["push_rejections"].threshold)
    if count - refused < threshold <= count:
        title = f"{count} refused pushes for {source} within a minute: a misconfigured provider, or an attack"
        raise_alert(svc, "push_rejections", source, title, {"count": count}, source)


class RejectionCounter(ProcessThread):
    """One per web process: refused pushes are counted on Redis by a thread, never in the request,
    so a hanging Redis cannot slow a flood of refusals into starving the pushes we take."""

    name = "rejections"
    max_pending = 100_000  # past this many uncounted refusals, more are dropped: the alert has fired

    def note(self, source: str) -> None:
        """Count one refused push of `source`; never blocks, never raises."""
        self.put((source, int(time.time() // 60)))

    def _run(self) -> None:
        while True:
            batch = self.take(self.max_pending)
            with self.app.app_context():
                svc = self.app.extensions["receiver"]
                for (source, minute), refused in Counter(batch).items():
                    try:
                        note_rejections(svc, source, minute, refused)
                    except Exception:  # noqa: BLE001 - the thread must live on
                        log.exception("alert.rejections_uncounted source=%s", source)


def sinks(alerts: AlertSettings) -> list[str]:
    """The configured delivery sinks besides the log."""
    return [
        name for name, on in (("webhook", alerts.webhook_url), ("slack", alerts.slack_webhook_url), ("email", alerts.email)) if on
    ]


def deliver(svc: Services, alert_id: int) -> str:
    """Send one alert to every sink not yet reached; raise TransientProviderError to be retried."""
    with svc.Session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None or alert.status == AlertStatus.DELIVERED:
            return "nothing to do"
        payload = {
            "rule": alert.rule,
            "title": alert.title,
            "source": alert.source,
            "order_id": alert.order_id,
            "detail": json.loads(alert.detail),
            "created_at": alert.created_at.isoformat(),
        }
        done = set(filter(None, alert.sinks.split(",")))
    alerts = svc.settings.alerts
    senders = {"webhook": _webhook, "slack": _slack, "email": _email}
    errors = []
    for name in sinks(alerts):
        if name in done:
            continue
        try:
            senders[name](svc, alerts, payload)
            done.add(name)
        except ValueError as err:  # ours: an HTTP status, no URL in it
            errors.append(f"{name}: {err}")
        except (requests.RequestException, OSError, smtplib.SMTPException) as err:
            # The class only: a requests error quotes the URL, and a webhook URL is a secret.
            errors.append(f"{name}: {err.__class__.__name__}")
    status = AlertStatus.PENDING if errors else AlertStatus.DELIVERED
    with svc.engine.begin() as conn:
        conn.execute(
            update(Alert)
            .where(Alert.id == alert_id)
            .values(
                sinks=",".join(sorted(done)),
                attempts=Alert.attempts + 1,
                status=status,
                last_error="; ".join(errors) or None,
                delivered_at=None if errors else utcnow(),
            )
        )
    if errors:
        raise TransientProviderError("; ".join(errors))
    return status


def give_up(svc: Services, alert_id: int) -> None:
    """Mark an alert's delivery failed for good (it stays in the log and the table)."""
    with svc.engine.begin() as conn:
        conn.execute(update(Alert).where(Alert.id == alert_id).values(status=AlertStatus.FAILED))
    log.error("alert.undeliverable alert=%s", alert_id)


def pending(svc: Services, limit: int = 100) -> list[int]:
    """Alerts whose delivery never started (its task was lost, or never queued). Ones already tried
    are left to their own retries: a second delivery task would send them twice."""
    cutoff = utcnow() - timedelta(seconds=svc.settings.sweep_grace)
    stmt = (
        select(Alert.id)
        .where(Alert.status == AlertStatus.PENDING, Alert.attempts == 0, Alert.created_at < cutoff)
        .order_by(Alert.id)
        .limit(limit)
    )
    with svc.engine.connect() as conn:
        return list(conn.scalars(stmt))


def _post(svc: Services, url: str, body: dict[str, Any]) -> None:
    resp = svc.http.post(url, json=body, timeout=10, allow_redirects=False)
    if resp.status_code >= 300:
        raise ValueError(f"HTTP {resp.status_code}")


def _webhook(svc: Services, alerts: AlertSettings, payload: dict[str, Any]) -> None:
    assert alerts.webhook_url
    _post(svc, alerts.webhook_url, payload)


def _slack(svc: Services, alerts: AlertSettings, payload: dict[str, Any]) -> None:
    """Slack-compatible incoming webhooks take `{"text": ...}`."""
    assert alerts.slack_webhook_url
    lines = [f"*{payload['title']}*"] + [f"• {k}: {v}" for k, v in payload["detail"].items()]
    _post(svc, alerts.slack_webhook_url, {"text": "\n".join(lines)})


def _email(svc: Services, alerts: AlertSettings, payload: dict[str, Any]) -> None:
    sink = alerts.email
    assert sink
    msg = EmailMessage()
    msg["Subject"] = f"[receiver] {payload['title']}"
    msg["From"] = sink.sender
    msg["To"] = ", ".join(sink.recipients)
    msg.set_content(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
        if sink.starttls:
            smtp.starttls()
        if sink.username:
            smtp.login(sink.username, sink.password or "")
        smtp.send_message(msg)
