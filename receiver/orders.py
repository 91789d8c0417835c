"""Applying a re-fetched order to local state: upsert order and lines, one history row per change."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, union
from sqlalchemy.orm import Session, selectinload

from receiver.models import Order, OrderChange, OrderLine, utcnow
from receiver.providers import STATUS_RANK, LineSnapshot, OrderSnapshot

# What our copy of an order must equal of the provider's to be called up to date (`receiver
# simulate --wait`, the bench's burst, the tests comparing two calls).
COMPARED = ("status", "raw_status", "product_amount", "shipping_fee", "discount", "total_amount", "refund_amount")
ORDER_FIELDS = ("order_no", "purchase_id", *COMPARED, "currency", "modified_at")
# Fields one call gives and another lacks (1688's order detail has no platform order number, the
# order page no modified time): a snapshot without one leaves ours as it is.
KEPT_WHEN_ABSENT = frozenset({"order_no", "purchase_id", "modified_at"})
LINE_FIELDS = ("product_id", "sku_id", "title", "quantity", "price", "amount", "refund_amount", "raw_status")


@dataclass(frozen=True)
class Change:
    """One field that changed."""

    field: str
    old: Any
    new: Any


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def is_stale(order: Order, snap: OrderSnapshot, fetch_started: datetime) -> bool:
    """Whether applying `snap` would move the order backwards.

    The provider's modified time decides when both sides have one. Without it, a fetch that started
    before the one we applied is stale, and so is a status of lower rank than the one we hold.
    """
    if order.modified_at and snap.modified_at:
        return snap.modified_at < order.modified_at
    if fetch_started < order.fetched_at:
        return True
    held, new = STATUS_RANK.get(order.status), STATUS_RANK.get(snap.status)
    return held is not None and new is not None and new < held


def find_order(session: Session, source: str, any_id: str) -> Order | None:
    """An order of `source` by any of its ids: provider order id, order number or purchase id."""
    # One lookup per id column on its (source, id) index: with an OR, SQLite read every order of the source.
    ids = union(
        *(select(Order.id).where(Order.source == source, column == any_id)
          for column in (Order.provider_order_id, Order.order_no, Order.purchase_id))
    ).subquery()
    stmt = (
        select(Order)
        .where(Order.id.in_(select(ids.c.id)))
        .order_by(Order.provider_order_id != any_id, Order.id)
        .options(selectinload(Order.lines), selectinload(Order.changes))
        .limit(1)
    )
    return session.scalars(stmt).first()


def apply_snapshot(
    session: Session, source: str, snap: OrderSnapshot, fetch_started: datetime, cause: str
) -> list[Change]:
    """Upsert one order and its lines from a re-fetch; record and return what changed."""
    stmt = select(Order).where(Order.source == source, Order.provider_order_id == snap.provider_order_id)
    order = session.scalars(stmt.with_for_update()).first()
    if order is None:
        order = Order(
            source=source,
            platform=snap.platform,
            provider_order_id=snap.provider_order_id,
            fetched_at=fetch_started,
            version=0,
            **{f: None for f in ORDER_FIELDS},
        )
        session.add(order)
    elif is_stale(order, snap, fetch_started):
        return []
    changes = [
        Change(f, getattr(order, f), getattr(snap, f))
        for f in ORDER_FIELDS
        if getattr(order, f) != getattr(snap, f) and not (f in KEPT_WHEN_ABSENT and getattr(snap, f) is None)
    ]
    for c in changes:
        setattr(order, c.field, c.new)
    changes += _apply_lines(order, snap.lines)
    order.fetched_at = max(order.fetched_at, fetch_started)
    if changes:
        order.version += 1
        order.changed_at = now = utcnow()
        for c in changes:
            order.changes.append(OrderChange(field=c.field, old=_text(c.old), new=_text(c.new), at=now, cause=cause))
    return changes


def _apply_lines(order: Order, lines: tuple[LineSnapshot, ...]) -> list[Change]:
    """Bring the order's lines in line with the snapshot, naming each changed field `line:<id>.<field>`."""
    held = {line.line_id: line for line in order.lines}
    changes: list[Change] = []
    for snap in lines:
        line = held.pop(snap.line_id, None)
        if line is None:
            line = OrderLine(line_id=snap.line_id)
            order.lines.append(line)
            changes.append(Change(f"line:{snap.line_id}", None, "added"))
        for f in LINE_FIELDS:
            old, new = getattr(line, f), getattr(snap, f)
            if old != new:
                setattr(line, f, new)
                if f in ("quantity", "price", "amount", "refund_amount", "raw_status") and old is not None:
                    changes.append(Change(f"line:{snap.line_id}.{f}", old, new))
    for gone in held.values():
        order.lines.remove(gone)
        changes.append(Change(f"line:{gone.line_id}", "present", None))
    return changes


def order_json(order: Order) -> dict[str, Any]:
    """An order as the read API shows it."""
    return {
        "source": order.source,
        "platform": order.platform,
        "provider_order_id": order.provider_order_id,
        "order_no": order.order_no,
        "purchase_id": order.purchase_id,
        "status": order.status,
        "raw_status": order.raw_status,
        "product_amount": order.product_amount,
        "shipping_fee": order.shipping_fee,
        "discount": order.discount,
        "total_amount": order.total_amount,
        "refund_amount": order.refund_amount,
        "currency": order.currency,
        "modified_at": order.modified_at.isoformat() if order.modified_at else None,
        "fetched_at": order.fetched_at.isoformat(),
        "changed_at": order.changed_at.isoformat() if order.changed_at else None,
        "version": order.version,
        "lines": [
            {
                "line_id": line.line_id,
                "product_id": line.product_id,
                "sku_id": line.sku_id,
                "title": line.title,
                "quantity": line.quantity,
                "price": line.price,
                "amount": line.amount,
                "refund_amount": line.refund_amount,
                "raw_status": line.raw_status,
            }
            for line in order.lines
        ],
        "history": [
            {"field": c.field, "old": c.old, "new": c.new, "at": c.at.isoformat(), "cause": c.cause}
            for c in order.changes
        ],
    }


def search_orders(session: Session, sources: list[str], any_id: str, limit: int = 50) -> list[Order]:
    """Orders of these sources with `any_id` as their provider order id, order number or purchase id."""
    # One lookup per id column, each on its (source, id) index, rather than an OR that scans the table.
    ids = union(
        *(
            select(Order.id).where(Order.source.in_(sources), column == any_id)
            for column in (Order.provider_order_id, Order.order_no, Order.purchase_id)
        )
    ).subquery()
    newest = select(Order).where(Order.id.in_(select(ids.c.id))).order_by(Order.changed_at.desc()).limit(limit)
    return list(session.scalars(newest))


def list_orders(
    session: Session, source: str | None, status: str | None, since: datetime | None, limit: int, offset: int = 0
) -> list[Order]:
    """Orders newest change first, optionally of one source, in one status, changed since a time."""
    stmt = select(Order)
    if source:
        stmt = stmt.where(Order.source == source)
    if status:
        stmt = stmt.where(Order.status == status)
    if since:
        stmt = stmt.where(Order.changed_at >= since)
    return list(session.scalars(stmt.order_by(Order.changed_at.desc(), Order.id.desc()).limit(limit).offset(offset)))


# What the changes page and its CSV call a price correction, a refund and a closure.
CHANGE_KINDS = {"total_amount": "price", "refund_amount": "refund", "status": "closed"}
CLOSED = ("cancelled", "closed")


@dataclass(frozen=True)
class MoneyChange:
    """A price correction, refund or closure of one order, as the changes page lists it."""

    at: datetime
    source: str
    provider_order_id: str
    order_no: str | None
    currency: str
    kind: str
    old: str
    new: str
    delta: int  # fen: new - old for prices and refunds, 0 for a closure
    cause: str


CLOSURE_FIELDS = tuple(field for field, kind in CHANGE_KINDS.items() if kind == "closed")


def money_changes(session: Session, since: datetime, until: datetime, source: str | None = None) -> list[MoneyChange]:
    """Price corrections, refunds and closures recorded in [since, until), newest first.

    A first fetch (no old value) is no change; a refund counts only when the refunded amount grew.
    """
    c = OrderChange
    stmt = (
        select(c.at, Order.source, Order.provider_order_id, Order.order_no, Order.currency, c.field, c.old, c.new, c.cause)
        .join(Order, Order.id == c.order_id)
        # `old IS NOT NULL` as the partial index ix_order_changes_field_at says it, so that it is used.
        .where(c.field.in_(tuple(CHANGE_KINDS)), c.at >= since, c.at < until, c.old.is_not(None))
        # A status change is listed only when it closed the order: the others are left in the database.
        .where(or_(c.field.not_in(CLOSURE_FIELDS), c.new.in_(CLOSED)))
        .order_by(c.at.desc(), c.id.desc())
    )
    if source:
        stmt = stmt.where(Order.source == source)
    found = []
    for at, src, pid, order_no, currency, field, old, new, cause in session.execute(stmt):
        kind = CHANGE_KINDS[field]
        if kind == "closed":
            if new not in CLOSED:
                continue
            delta = 0
        else:
            delta = int(new or 0) - int(old or 0)
            if kind == "refund" and delta <= 0:
                continue
        found.append(MoneyChange(at, src, pid, order_no, currency or "CNY", kind, old or "", new or "", delta, cause))
    return found


def change_totals(changes: list[MoneyChange]) -> dict[str, dict[str, int]]:
    """Per source: how many price corrections, refunds and closures, and the fen they moved."""
    totals: dict[str, dict[str, int]] = {}
    for c in changes:
        t = totals.setdefault(c.source, {"price": 0, "price_delta": 0, "refund": 0, "refund_delta": 0, "closed": 0})
        t[c.kind] += 1
        if c.kind != "closed":
            t[f"{c.kind}_delta"] += c.delta
    return dict(sorted(totals.items()))
