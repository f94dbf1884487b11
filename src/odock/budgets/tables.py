"""Tables of budgets and quotas, and the durable ledger behind their counters.

Configuration: ``budgets`` (money, integer nanos USD) and ``quotas`` (a metric and a limit),
each owned by an organisation, team, user or API key, on a schedule of windows.

Ledger (the source of truth the hot-path counters are rebuilt from):
``meter_windows`` — one row per counter (meter, schedule version, window index) with the
settled ``used`` amount; ``meter_settlements`` — what each request settled into each window
(primary key = idempotency); ``meter_reservations`` — reservations currently held, written
shortly after they are made and removed when settled, released or expired.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from odock.budgets.windows import Period
from odock.db.base import Base, IdType, JsonType, utcnow


class OwnerType(enum.StrEnum):
    """Who a budget or quota limits (spec §3.1)."""

    ORG = "ORG"
    TEAM = "TEAM"
    USER = "USER"
    APIKEY = "APIKEY"


class QuotaMetric(enum.StrEnum):
    """What a quota counts."""

    REQUESTS = "REQUESTS"
    TOKENS = "TOKENS"
    TOKENS_IN = "TOKENS_IN"
    TOKENS_OUT = "TOKENS_OUT"
    ERRORS = "ERRORS"
    COST = "COST"


class _Metered:
    """Columns shared by budgets and quotas."""

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    owner_type: Mapped[OwnerType] = mapped_column(Enum(OwnerType, native_enum=False, length=10))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    period: Mapped[Period] = mapped_column(Enum(Period, native_enum=False, length=10))
    start_at: Mapped[datetime] = mapped_column()
    end_at: Mapped[datetime | None] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    rollover: Mapped[bool] = mapped_column(default=False)
    thresholds: Mapped[list[int]] = mapped_column(JsonType, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    # Bumped when the schedule or limit changes, so counters of the old schedule are not reused.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Budget(_Metered, Base):
    """A spending limit in nanos USD per window."""

    __tablename__ = "budgets"

    currency: Mapped[str] = mapped_column(String(3), default="USD")
    amount_nanos_usd: Mapped[int] = mapped_column(BigInteger)


class Quota(_Metered, Base):
    """A limit on a usage metric per window."""

    __tablename__ = "quotas"

    metric: Mapped[QuotaMetric] = mapped_column(Enum(QuotaMetric, native_enum=False, length=12))
    limit: Mapped[int] = mapped_column(BigInteger)


class MeterWindow(Base):
    """The settled usage of one window of one budget or quota (the counter's durable copy)."""

    __tablename__ = "meter_windows"
    __table_args__ = (Index("ix_meter_windows_meter", "meter_kind", "meter_id", "window_index"),)

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    meter_kind: Mapped[str] = mapped_column(String(10))  # budget | quota
    meter_id: Mapped[str] = mapped_column(IdType)
    version: Mapped[int] = mapped_column(Integer)
    window_index: Mapped[int] = mapped_column(Integer)
    start: Mapped[datetime] = mapped_column()
    end: Mapped[datetime] = mapped_column()
    limit: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    thresholds_crossed: Mapped[list[int]] = mapped_column(JsonType, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MeterSettlement(Base):
    """What one request settled into one window; the primary key makes settlement idempotent."""

    __tablename__ = "meter_settlements"

    request_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_key: Mapped[str] = mapped_column(String(120), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    settled_at: Mapped[datetime] = mapped_column(default=utcnow)


class MeterReservation(Base):
    """A reservation currently held by a request against one window."""

    __tablename__ = "meter_reservations"

    request_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_key: Mapped[str] = mapped_column(String(120), primary_key=True, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
