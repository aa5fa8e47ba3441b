"""Audited changes to the two control rows: the risk limits and the trading state.

The admin calls these services today; the dashboard's controls will call the same ones, so a
limit or a halt changes in exactly one way whoever asks: under a row lock, validated by the
model, and written together with its audit rows in one transaction (either both or neither).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from trading.models import RiskSettings, RiskSettingsChange, TradingState, TradingStateChange

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _audit_text(field: models.Field[Any, Any], value: Any) -> str:
    """How a value is written in the audit trail: Decimals at the field's own precision."""
    if value is None:
        return ""
    if isinstance(field, models.DecimalField) and isinstance(value, Decimal):
        return str(value.quantize(Decimal(1).scaleb(-field.decimal_places)))
    return str(value)


@transaction.atomic
def risk_settings_update(
    *,
    settings_obj: RiskSettings,
    changes: dict[str, Any],
    user: User | None,
    via: str,
) -> list[RiskSettingsChange]:
    """Apply ``changes`` (field name → new value) to the risk settings row and audit them.

    The row is locked and re-read, so the old values in the audit trail are what was really
    stored, and a field nobody asked to change is never overwritten with a stale value. Only
    fields whose value differs are written; each gets one ``RiskSettingsChange``. Returns those
    rows: an empty list means nothing changed (and nothing was saved).

    Raises ``ValueError`` for a field that is not in ``RiskSettings.AUDITED_FIELDS`` and
    ``ValidationError`` (with nothing written) when the result breaks a validator or
    ``RiskSettings.clean()``. ``settings_obj`` is refreshed with the stored values on success.
    """
    unknown = sorted(set(changes) - set(RiskSettings.AUDITED_FIELDS))
    if unknown:
        raise ValueError(f"Not an editable risk setting: {', '.join(unknown)}")

    row = RiskSettings.objects.select_for_update().get(pk=settings_obj.pk)
    pending: list[tuple[models.Field[Any, Any], Any, Any]] = []
    for name, raw in changes.items():
        field = RiskSettings._meta.get_field(name)
        assert isinstance(field, models.Field)
        try:
            new = field.to_python(raw)
        except ValidationError as exc:
            raise ValidationError({name: exc.messages}) from None
        old = getattr(row, name)
        if new != old:
            pending.append((field, old, new))
            setattr(row, name, new)
    if not pending:
        return []

    row.updated_by = user
    row.updated_at = timezone.now()
    row.full_clean()  # validators, clean() (edge tiers ordered) and the DB constraints
    row.save()
    audit = RiskSettingsChange.objects.bulk_create(
        RiskSettingsChange(
            changed_at=row.updated_at,
            changed_by=user,
            field=field.name,
            old_value=_audit_text(field, old),
            new_value=_audit_text(field, getattr(row, field.name)),
            via=via,
        )
        for field, old, _new in pending
    )
    settings_obj.refresh_from_db()
    return audit


# A reason longer than the column is cut to fit and ends with this note (a halt never fails on
# the length of its reason).
REASON_CUT_NOTE = " [... cut to fit]"
REASON_MAX_LENGTH = TradingState._meta.get_field("reason").max_length or 500


def state_reason(reason: str | None, *, state: str, user: User | None) -> str:
    """``reason`` as it is stored: NUL bytes dropped, trimmed, cut to the column's length with
    ``REASON_CUT_NOTE``; a halt without one gets a default naming who halted."""
    reason = (reason or "").replace("\x00", "").strip()
    if not reason and state == TradingState.State.HALTED:
        who = f"by {user.get_username()}" if user is not None else "from the command line"
        reason = f"halted {who} (no reason given)"
    if len(reason) > REASON_MAX_LENGTH:
        reason = reason[: REASON_MAX_LENGTH - len(REASON_CUT_NOTE)].rstrip() + REASON_CUT_NOTE
    return reason


@transaction.atomic
def trading_state_set(*, state: str, reason: str, user: User | None) -> TradingState:
    """Move trading to ``state`` (active / reduce-only / halted) and record who did it and why.

    Every change of the state or of its reason writes one ``TradingStateChange``; asking for
    what is already set writes nothing. The reason goes through ``state_reason``: a halt never
    fails on its reason (a blank one gets a default, a long one is cut to fit). ``live_armed``
    is not touched here: arming live trading is its own, separately confirmed action.
    """
    if state not in TradingState.State.values:
        raise ValidationError({"state": f"Unknown trading state {state!r}."})
    reason = state_reason(reason, state=state, user=user)

    TradingState.load()  # the row exists before it is locked
    row = TradingState.objects.select_for_update().get(pk=TradingState.SINGLETON_PK)
    if row.state == state and row.reason == reason:
        return row

    old_state = row.state
    row.state = state
    row.reason = reason
    row.changed_at = timezone.now()
    row.changed_by = user
    row.full_clean()
    row.save()
    TradingStateChange.objects.create(
        changed_at=row.changed_at,
        changed_by=user,
        old_state=old_state,
        new_state=state,
        live_armed=row.live_armed,
        reason=reason,
    )
    return row


ARM_CONFIRMATION = "ARM LIVE TRADING"


@transaction.atomic
def live_trading_arm(*, user: User | None, confirmation: str) -> TradingState:
    """Allow real orders (with ``TRADING_MODE=live``): the operator must type the confirmation.

    Who armed it and when is recorded on the row and in the history.
    """
    if confirmation.strip() != ARM_CONFIRMATION:
        raise ValidationError({"confirmation": f"Type {ARM_CONFIRMATION!r} exactly to arm."})
    return _set_armed(True, user=user, reason="live trading armed")


@transaction.atomic
def live_trading_disarm(*, user: User | None) -> TradingState:
    return _set_armed(False, user=user, reason="live trading disarmed")


def _set_armed(armed: bool, *, user: User | None, reason: str) -> TradingState:
    TradingState.load()
    row = TradingState.objects.select_for_update().get(pk=TradingState.SINGLETON_PK)
    if row.live_armed == armed:
        return row
    row.live_armed = armed
    row.armed_at = timezone.now() if armed else None
    row.armed_by = user if armed else None
    row.save(update_fields=["live_armed", "armed_at", "armed_by"])
    TradingStateChange.objects.create(
        changed_at=timezone.now(),
        changed_by=user,
        old_state=row.state,
        new_state=row.state,
        live_armed=armed,
        reason=reason,
    )
    return row
