"""Reason codes: why a candidate market was traded or not. Pure (no Django imports).

Every candidate in a decide cycle leaves a ``Decision`` whose ``reason`` is one of these, so the
dashboard's funnel can answer "why no trades today". The strategy code returns them; the
``Decision`` model uses them as its choices.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    TRADED = "traded"
    EXIT = "exit"
    # Candidate filters
    SKIP_STATUS = "skip_status"
    SKIP_VOLUME = "skip_volume"
    SKIP_CLOSE_TIME = "skip_close_time"
    SKIP_CATEGORY = "skip_category"
    SKIP_OPEN_POSITION = "skip_open_position"
    SKIP_RECENTLY_ANALYSED = "skip_recently_analysed"
    SKIP_NO_QUOTE = "skip_no_quote"
    SKIP_ORDER_PENDING = "skip_order_pending"
    SKIP_ENTRY_RESTING = "skip_entry_resting"
    # Forecast
    NO_FORECAST = "no_forecast"
    AI_BUDGET_EXHAUSTED = "ai_budget_exhausted"
    INVALID_FORECAST = "invalid_forecast"
    LOW_CONFIDENCE = "low_confidence"
    NO_SKILL = "no_skill"
    # Edge and size
    EDGE_TOO_SMALL = "edge_too_small"
    INSUFFICIENT_DEPTH = "insufficient_depth"
    SIZE_ZERO = "size_zero"
    # Risk limits
    RISK_POSITION_SIZE = "risk_position_size"
    RISK_OPEN_POSITIONS = "risk_open_positions"
    RISK_CASH_RESERVE = "risk_cash_reserve"
    RISK_CATEGORY_EXPOSURE = "risk_category_exposure"
    RISK_DAILY_LOSS = "risk_daily_loss"
    # Trading state
    TRADING_HALTED = "trading_halted"
    REDUCE_ONLY = "reduce_only"

    @property
    def label(self) -> str:
        return REASON_LABELS[self]


REASON_LABELS: dict[Reason, str] = {
    Reason.TRADED: "Traded",
    Reason.EXIT: "Exit",
    Reason.SKIP_STATUS: "Market not open",
    Reason.SKIP_VOLUME: "Volume below minimum",
    Reason.SKIP_CLOSE_TIME: "Closes too late or too soon",
    Reason.SKIP_CATEGORY: "Category excluded",
    Reason.SKIP_OPEN_POSITION: "Position already open",
    Reason.SKIP_RECENTLY_ANALYSED: "Analysed recently",
    Reason.SKIP_NO_QUOTE: "No executable quote",
    Reason.SKIP_ORDER_PENDING: "Order pending or of unknown outcome",
    Reason.SKIP_ENTRY_RESTING: "Entry order still resting",
    Reason.NO_FORECAST: "No forecast",
    Reason.AI_BUDGET_EXHAUSTED: "AI budget exhausted",
    Reason.INVALID_FORECAST: "Invalid forecast output",
    Reason.LOW_CONFIDENCE: "Confidence below minimum",
    Reason.NO_SKILL: "Forecaster has no proven skill",
    Reason.EDGE_TOO_SMALL: "Edge after fees too small",
    Reason.INSUFFICIENT_DEPTH: "Not enough depth at the price",
    Reason.SIZE_ZERO: "Sized to zero",
    Reason.RISK_POSITION_SIZE: "Position size limit",
    Reason.RISK_OPEN_POSITIONS: "Open positions limit",
    Reason.RISK_CASH_RESERVE: "Cash reserve limit",
    Reason.RISK_CATEGORY_EXPOSURE: "Category exposure limit",
    Reason.RISK_DAILY_LOSS: "Daily loss limit",
    Reason.TRADING_HALTED: "Trading halted",
    Reason.REDUCE_ONLY: "Reduce-only mode",
}

REASON_CHOICES = [(reason.value, REASON_LABELS[reason]) for reason in Reason]
