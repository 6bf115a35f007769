"""Quota warnings: a tenant's webhook is POSTed once when a month's usage reaches 80% of an
included quota, and once when it reaches 100%.

The usage row that crosses a threshold inserts a `quota_alerts` row in the transaction that
writes it (serve_app.platform.usage, `on_priced`); (tenant, month, quota, threshold) is
unique, so concurrent writers, retries and replicas make one alert, never two. Delivery is
the jobs' signed webhook machinery (serve_app.platform.jobs.webhooks: X-QTTS-Signature, the
same retries) to the tenant's webhook (`PUT /admin/tenants/{tenant}/webhook`), its secret
sealed with the voice keyring. An alert is claimed with a lease before it is sent, so one
sender delivers it; a tenant with no webhook has its alerts marked `no_webhook`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from serve_app.platform.crypto import Keyring
from serve_app.platform.db import Database, dialect_insert
from serve_app.platform.jobs.webhooks import check_webhook_url
from serve_app.platform.models import QuotaAlertRow, TenantWebhookRow, utcnow
from serve_app.platform.pricing import Priced
from serve_app.platform.tenants import find_tenant

THRESHOLDS = (80, 100)
#: The event header of each threshold.
EVENTS = {80: "quota.warning", 100: "quota.reached"}
UNITS = {"characters": "characters", "audio_seconds": "milliseconds", "voice_clones": "voices"}


def _secret_aad(tenant_id: str) -> bytes:
    return f"tenant:{tenant_id}:webhook".encode()


def crossed(priced: Priced) -> list[tuple[str, int, int, int]]:
    """(quota, threshold, used after, included) for each threshold this row crossed."""
    out = []
    for quota, use in priced.quotas.items():
        if use.included <= 0:
            continue
        for threshold in THRESHOLDS:
            mark = use.included * threshold  # compare in whole percents, no floats
            if use.before * 100 < mark <= use.after * 100:
                out.append((quota, threshold, use.after, use.included))
    return out


def open_alerts(session: Session, tenant_id: str, at: datetime, priced: Priced) -> int:
    """Insert the alerts this row's pricing crossed (in the row's transaction); how many are
    new."""
    period = at.strftime("%Y-%m")
    insert = dialect_insert(session)
    new = 0
    for quota, threshold, used, included in crossed(priced):
        result = session.execute(insert(QuotaAlertRow.__table__).values(
            tenant_id=tenant_id, period=period, quota=quota, threshold=threshold, used=used,
            included=included, status="pending", attempts=0, created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["tenant_id", "period", "quota", "threshold"])
            .returning(QuotaAlertRow.__table__.c.id))
        new += result.first() is not None
    return new


@dataclass(frozen=True)
class PendingAlert:
    id: int
    tenant_id: str
    url: str
    secret: str
    event: str
    payload: dict

    def __repr__(self) -> str:  # never print the secret
        return f"PendingAlert(id={self.id}, tenant_id={self.tenant_id!r}, event={self.event!r})"


class QuotaAlerts:
    def __init__(self, db: Database, keyring: Keyring, lease_s: float = 600.0):
        self._db = db
        self._keyring = keyring
        self.lease_s = lease_s

    def set_webhook(self, tenant: str, url: str, secret: str | None = None) -> dict:
        """Set the tenant's account webhook; a secret made here is returned this once."""
        check_webhook_url(url)
        made = None
        if not secret:
            secret = made = "whsec_" + secrets.token_urlsafe(24)
        with self._db.admin_transaction() as session:
            owner = find_tenant(session, tenant)
            row = session.get(TenantWebhookRow, owner.id) or TenantWebhookRow(tenant_id=owner.id)
            row.url = url
            row.secret = self._keyring.encrypt_text(secret, _secret_aad(owner.id))
            row.updated_at = utcnow()
            session.add(row)
            out = {"tenant_id": owner.id, "url": url}
        if made:
            out["secret"] = made  # shown this once
        return out

    def claim(self, now: datetime | None = None) -> PendingAlert | None:
        """A pending alert no one is delivering, leased to the caller (admin: any tenant);
        alerts of tenants with no webhook are marked `no_webhook` on the way."""
        now = now or utcnow()
        while True:
            with self._db.admin_transaction() as session:
                row = session.scalar(
                    select(QuotaAlertRow).where(QuotaAlertRow.status == "pending",
                                                or_(QuotaAlertRow.lease_until.is_(None),
                                                    QuotaAlertRow.lease_until < now))
                    .order_by(QuotaAlertRow.id).limit(1).with_for_update(skip_locked=True))
                if row is None:
                    return None
                hook = session.get(TenantWebhookRow, row.tenant_id)
                if hook is None:
                    row.status = "no_webhook"
                    continue
                row.lease_until = now + timedelta(seconds=self.lease_s)
                payload = {"type": EVENTS[row.threshold], "tenant_id": row.tenant_id,
                           "period": row.period, "quota": row.quota,
                           "threshold": row.threshold, "used": row.used,
                           "included": row.included, "unit": UNITS[row.quota],
                           "created_at": row.created_at.isoformat()}
                secret = self._keyring.decrypt_text(hook.secret, _secret_aad(row.tenant_id))
                return PendingAlert(row.id, row.tenant_id, hook.url, secret,
                                    EVENTS[row.threshold], payload)

    def finished(self, alert_id: int, delivered: bool, attempts: int, error: str | None) -> None:
        with self._db.admin_transaction() as session:
            session.execute(update(QuotaAlertRow).where(QuotaAlertRow.id == alert_id).values(
                status="delivered" if delivered else "failed", attempts=attempts,
                last_error=error, lease_until=None).execution_options(synchronize_session=False))

    def list(self, tenant_id: str) -> list[dict]:
        with self._db.transaction(tenant_id) as session:
            rows = session.scalars(select(QuotaAlertRow)
                                   .where(QuotaAlertRow.tenant_id == tenant_id)
                                   .order_by(QuotaAlertRow.id)).all()
            return [{"period": r.period, "quota": r.quota, "threshold": r.threshold,
                     "used": r.used, "included": r.included, "status": r.status,
                     "attempts": r.attempts} for r in rows]
