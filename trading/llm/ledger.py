"""The daily AI budget and the record of every language-model call.

Budget (exact, and shared by every process through the database):

1. before each HTTP attempt, the worst-case cost of the attempt (``ChatClient.worst_case_cost``:
   every input byte a token, every allowed output token used) is **reserved** with one
   conditional UPDATE on today's ``DailyCost`` row: ``llm_cost = llm_cost + reserve WHERE
   llm_cost + reserve <= budget``. Two processes cannot both pass the check with the same
   money: on PostgreSQL the second UPDATE waits for the first and re-checks the condition; on
   SQLite writers are serialised;
2. when the reservation fails, no request is sent and the call is recorded as ``refused``;
3. afterwards the reservation is **settled** to the actual cost (from the reply's token usage
   and the price table), with the token and call counters, in one UPDATE with ``F()``.

Attempts whose answer was lost after sending (a read timeout) and replies without token usage
are charged the worst case: the provider may have billed them. A process killed between
reserve and settle leaves its reservation spent (fail closed). The day is the UTC date of the
wall clock when the call starts; reserve and settle use the same day.

SQLite keeps decimals as floating point: every update is rounded to the micro-dollar in SQL
and the budget comparison allows half a micro-dollar, so the check is exact on both databases
(all amounts are whole micro-dollars).

Every call leaves an ``LLMCall`` row: created before the request is sent (so a crash leaves a
trace), completed afterwards with status ok / invalid / error, or written ``refused`` when the
budget said no. Prompt, response and error text pass through ``config.logging.redact``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db.models import DecimalField, F, Value
from django.db.models.functions import Greatest, Round
from django.utils import timezone

from config.logging import redact
from markets.models import Market
from markets.money import MONEY_PLACES, MONEY_QUANTUM, ZERO
from trading.llm.client import ChatClient, LLMError
from trading.llm.output import InvalidOutput, ParsedForecast, parse_forecast
from trading.models import DailyCost, LLMCall
from trading.prompts import render

logger = logging.getLogger(__name__)

HALF_QUANTUM = MONEY_QUANTUM / 2
MAX_STORED_CHARS = 20_000
_MONEY = DecimalField(max_digits=15, decimal_places=MONEY_PLACES)


class BudgetExhausted(Exception):
    pass


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _money(expression) -> Greatest:
    """``expression`` rounded to the micro-dollar and never below zero, in SQL."""
    return Greatest(
        Round(expression, MONEY_PLACES, output_field=_MONEY),
        Value(ZERO, output_field=_MONEY),
        output_field=_MONEY,
    )


def budget_reserve(*, day: date, amount: Decimal, budget: Decimal) -> bool:
    """Add ``amount`` to ``day``'s AI spend if the total stays within ``budget``; say if so."""
    DailyCost.objects.get_or_create(date=day)
    ceiling = budget - amount + HALF_QUANTUM
    if ceiling < 0:
        return False
    updated = DailyCost.objects.filter(date=day, llm_cost__lte=ceiling).update(
        llm_cost=_money(F("llm_cost") + amount)
    )
    return updated == 1


def budget_settle(
    *,
    day: date,
    reserved: Decimal,
    actual: Decimal,
    input_tokens: int = 0,
    output_tokens: int = 0,
    calls: int = 1,
) -> None:
    """Replace the reservation by the actual cost and count the call and its tokens."""
    DailyCost.objects.filter(date=day).update(
        llm_cost=_money(F("llm_cost") + (actual - reserved)),
        llm_calls=F("llm_calls") + calls,
        input_tokens=F("input_tokens") + input_tokens,
        output_tokens=F("output_tokens") + output_tokens,
    )


def spent_on(day: date) -> Decimal:
    return DailyCost.objects.filter(date=day).values_list("llm_cost", flat=True).first() or ZERO


def _clean(text: str) -> str:
    """``text`` redacted and storable (PostgreSQL text cannot hold NUL)."""
    return redact(text).replace("\x00", "\ufffd")


def _stored(text: str | None) -> str:
    text = _clean(text or "")
    if len(text) > MAX_STORED_CHARS:
        text = text[:MAX_STORED_CHARS] + f"\n[... {len(text) - MAX_STORED_CHARS} more characters]"
    return text


@dataclass(frozen=True)
class CallOutcome:
    """What one recorded call produced: a parsed forecast, or why not."""

    call_id: int
    status: str
    parsed: ParsedForecast | None = None
    error: str = ""
    budget_exhausted: bool = False
    cost: Decimal = ZERO

    @property
    def ok(self) -> bool:
        return self.parsed is not None


def _check_reply(text: str | None, *, refusal: str, finish_reason: str) -> ParsedForecast:
    if refusal:
        raise InvalidOutput(f"model refused: {refusal[:200]}", refusal=True)
    if finish_reason == "content_filter":
        raise InvalidOutput("the provider's content filter stopped the reply")
    if finish_reason == "length":
        raise InvalidOutput("the reply was cut off at the output-token limit")
    return parse_forecast(text)


def recorded_call(
    client: ChatClient,
    messages: list[dict[str, str]],
    *,
    purpose: str,
    prompt_version: str,
    market: Market | None,
    budget: Decimal,
    max_output_tokens: int,
    temperature: float | None = None,
    wall: Callable[[], datetime] = timezone.now,
) -> CallOutcome:
    """One forecast call within the budget, recorded as an ``LLMCall``. Never raises for a
    provider or output problem: the outcome says what happened."""
    started = wall()
    day = utc_day(started)
    prompt = _stored(render(messages))
    reserve = client.worst_case_cost(messages, max_output_tokens)
    row = dict(
        created_at=started,
        market=market,
        provider=client.provider.name,
        model=client.model,
        prompt_version=prompt_version,
        purpose=purpose,
        prompt=prompt,
    )
    if not budget_reserve(day=day, amount=reserve, budget=budget):
        error = (
            f"AI daily budget exhausted: ${spent_on(day)} of ${budget} spent on {day}; "
            f"this call could cost up to ${reserve}"
        )
        call = LLMCall.objects.create(status=LLMCall.Status.REFUSED, error=error, **row)
        return CallOutcome(call.pk, LLMCall.Status.REFUSED, error=error, budget_exhausted=True)

    reserved = reserve

    def reserve_retry(attempt: int) -> None:
        nonlocal reserved
        if attempt == 0:
            return  # reserved above
        if not budget_reserve(day=day, amount=reserve, budget=budget):
            raise BudgetExhausted("AI daily budget exhausted before a retry")
        reserved += reserve

    call = LLMCall.objects.create(
        status=LLMCall.Status.ERROR, error="in flight: no answer recorded", **row
    )
    actual = reserve  # fail closed until we know better
    tokens = (0, 0)
    status, response, error, latency_ms = LLMCall.Status.ERROR, "", "", 0
    parsed: ParsedForecast | None = None
    exhausted = False
    try:
        result = client.complete(
            messages,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            before_attempt=reserve_retry,
        )
    except LLMError as exc:
        actual = reserve * exc.unknown_attempts
        error, response = exc.message, exc.body
        exhausted = exc.kind == "budget"
    except Exception as exc:  # a bug must not lose the record, nor trade
        logger.exception("LLM call %s failed unexpectedly", call.pk)
        actual = reserved
        error = f"internal error: {type(exc).__name__}: {exc}"
    else:
        actual = result.cost + reserve * (result.unknown_attempts + int(result.usage_missing))
        tokens = (result.input_tokens, result.output_tokens)
        latency_ms = result.latency_ms
        response = result.text or result.refusal or ""
        notes = [f"note: {n}" for n in result.notes]
        try:
            parsed = _check_reply(
                result.text, refusal=result.refusal, finish_reason=result.finish_reason
            )
        except InvalidOutput as exc:
            status, error = LLMCall.Status.INVALID, "; ".join([exc.reason, *notes])
        else:
            # The model never sees a secret, but nothing it echoes may carry one either.
            parsed = ParsedForecast(
                parsed.probability,
                parsed.confidence,
                redact(parsed.rationale),
                tuple(redact(f) for f in parsed.key_factors),
            )
            status, error = LLMCall.Status.OK, "; ".join(notes)
    finally:
        if latency_ms == 0:
            latency_ms = max(0, int((wall() - started).total_seconds() * 1000))
        budget_settle(
            day=day,
            reserved=reserved,
            actual=actual,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
        )
        LLMCall.objects.filter(pk=call.pk).update(
            status=status,
            response=_stored(response),
            error=_stored(error),
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            cost=actual,
            latency_ms=latency_ms,
        )
    return CallOutcome(
        call.pk, status, parsed=parsed, error=_clean(error), budget_exhausted=exhausted, cost=actual
    )
