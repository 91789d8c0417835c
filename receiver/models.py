"""Local state: the inbox of raw events, the orders they announce, and what changed."""
from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class EventStatus(StrEnum):
    """The life of an inbox event, in the order an event lives it."""

    RECEIVED = "received"  # stored, maybe not yet on the queue
    QUEUED = "queued"  # on the queue
    PROCESSED = "processed"  # its order was re-fetched and applied
    IGNORED = "ignored"  # stored and acknowledged, but a type we do not act on
    FAILED = "failed"  # last attempt failed, a retry is scheduled
    DEAD = "dead"  # failed for good; can be replayed


class Event(Base):
    """One push as it arrived: raw headers and body, and what became of it."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        # A replayed nonce is refused by the very INSERT that stores the push (receiver/inbox.py).
        UniqueConstraint("source", "nonce"),
        Index("ix_events_status_received_at", "status", "received_at"),
        Index("ix_events_status_updated_at", "status", "updated_at"),
        Index("ix_events_source_received_at", "source", "received_at"),
        # Covers inbox_counts' GROUP BY (/metrics, /admin): an index-only scan of a million events takes
        # 0.1-0.16 s where the table's scan took 1.6 s on SQLite and 0.4 s (3 processes) on PostgreSQL.
        Index("ix_events_source_status_kind_platform", "source", "status", "kind", "platform"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    message_type: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    platform: Mapped[str | None] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(128))
    headers: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    ignored_reason: Mapped[str | None] = mapped_column(String(255))  # why an ignored event asks for no re-fetch
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SpentNonce(Base):
    """A nonce spent by a push that left no event of its own: a redelivery, or a malformed push.

    Every other nonce is kept on its event (`Event.nonce`). Kept twice the timestamp window; past
    that, a replay's timestamp is refused anyway.
    """

    __tablename__ = "nonces"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Order(Base):
    """Our copy of one provider order, as last re-fetched from the provider's API."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("source", "provider_order_id"),
        Index("ix_orders_source_order_no", "source", "order_no"),
        Index("ix_orders_source_purchase_id", "source", "purchase_id"),
        Index("ix_orders_source_status_fetched_at", "source", "status", "fetched_at"),
        # The admin's order list, newest change first, whole or by source or status.
        Index("ix_orders_changed_at", "changed_at"),
        Index("ix_orders_source_changed_at", "source", "changed_at"),
        Index("ix_orders_status_changed_at", "status", "changed_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(16))
    provider_order_id: Mapped[str] = mapped_column(String(64))
    order_no: Mapped[str | None] = mapped_column(String(64))
    purchase_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    raw_status: Mapped[str] = mapped_column(String(64))
    product_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    shipping_fee: Mapped[int] = mapped_column(BigInteger, default=0)
    discount: Mapped[int] = mapped_column(BigInteger, default=0)
    total_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(8), default="CNY")
    modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # when a re-fetch last changed anything
    version: Mapped[int] = mapped_column(Integer, default=1)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id"
    )
    changes: Mapped[list[OrderChange]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderChange.id"
    )


class OrderLine(Base):
    """One line item of an order."""

    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "line_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line_id: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str | None] = mapped_column(String(64))
    sku_id: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(Text)
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    price: Mapped[int] = mapped_column(BigInteger, default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    raw_status: Mapped[str | None] = mapped_column(String(64))

    order: Mapped[Order] = relationship(back_populates="lines")


class OrderChange(Base):
    """One field of one order that changed, and what caused it: what alerting and people read."""

    __tablename__ = "order_changes"
    # The admin's changes page: a window of some fields' changes, first fetches (no old value) left out.
    __table_args__ = (
        Index(
            "ix_order_changes_field_at", "field", "at",
            sqlite_where=text("old IS NOT NULL"), postgresql_where=text("old IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(64))
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cause: Mapped[str] = mapped_column(String(64))

    order: Mapped[Order] = relationship(back_populates="changes")


class AlertStatus(StrEnum):
    """Where an alert's delivery stands (the log sink has it from the start)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Alert(Base):
    """One incident raised to people: stored once per dedupe window, delivered by a task."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("dedupe_key"), Index("ix_alerts_created_at", "created_at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rule: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.PENDING)
    sinks: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
