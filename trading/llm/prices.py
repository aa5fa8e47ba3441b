"""What a language-model call costs: a per-model price table, in exact Decimal dollars.

Prices are US dollars per 1,000,000 tokens, input and output, as the providers list them for
standard (not batch, not cached) use, late 2025. Check them against the provider's page when
you rely on the budget; ``LLM_PRICE_INPUT_PER_M`` / ``LLM_PRICE_OUTPUT_PER_M`` override the table
for the configured model.

Look-up: the model id is lower-cased, an OpenRouter vendor prefix (``x-ai/``, ``openai/``) and
variant suffix (``:free``, ``:beta``) are dropped, then a dated or ``-latest`` suffix
(``grok-4-0709``, ``gpt-4o-2024-08-06``) if the id is not in the table as it is. Never a
prefix match: ``gpt-5-pro`` is not ``gpt-5``.

A model not in the table is charged **the conservative default** ($15 in / $75 out per 1M, the
top of the mainstream range), so an unknown model can never spend the budget unseen; the call
carries a note saying so. A local server (``LLM_PROVIDER=local``) costs nothing unless the
override settings give it a price.

Cost = (input tokens × input price + output tokens × output price) / 1,000,000, computed
exactly and rounded **up** to the micro-dollar (``MONEY_QUANTUM``), the safe direction for a
budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from markets.money import MONEY_QUANTUM, ZERO

PER = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    """Dollars per 1M input and output tokens; ``known`` False for the default."""

    input: Decimal
    output: Decimal
    known: bool = True
    note: str = ""

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        return call_cost(self, input_tokens, output_tokens)


def _p(input_: str, output: str) -> Price:
    return Price(Decimal(input_), Decimal(output))


PRICES: dict[str, Price] = {
    # xAI
    "grok-4": _p("3.00", "15.00"),
    "grok-4-fast": _p("0.20", "0.50"),
    "grok-4-fast-reasoning": _p("0.20", "0.50"),
    "grok-4-fast-non-reasoning": _p("0.20", "0.50"),
    "grok-4-1-fast": _p("0.20", "0.50"),
    "grok-4-1-fast-reasoning": _p("0.20", "0.50"),
    "grok-4-1-fast-non-reasoning": _p("0.20", "0.50"),
    "grok-code-fast-1": _p("0.20", "1.50"),
    "grok-3": _p("3.00", "15.00"),
    "grok-3-mini": _p("0.30", "0.50"),
    # OpenAI
    "gpt-5": _p("1.25", "10.00"),
    "gpt-5-mini": _p("0.25", "2.00"),
    "gpt-5-nano": _p("0.05", "0.40"),
    "gpt-4.1": _p("2.00", "8.00"),
    "gpt-4.1-mini": _p("0.40", "1.60"),
    "gpt-4.1-nano": _p("0.10", "0.40"),
    "gpt-4o": _p("2.50", "10.00"),
    "gpt-4o-mini": _p("0.15", "0.60"),
    "o3": _p("2.00", "8.00"),
    "o3-mini": _p("1.10", "4.40"),
    "o4-mini": _p("1.10", "4.40"),
    # Through OpenRouter (vendor prefix dropped)
    "claude-sonnet-4": _p("3.00", "15.00"),
    "claude-sonnet-4.5": _p("3.00", "15.00"),
    "claude-opus-4": _p("15.00", "75.00"),
    "claude-opus-4.1": _p("15.00", "75.00"),
    "claude-haiku-4.5": _p("1.00", "5.00"),
    "gemini-2.5-pro": _p("1.25", "10.00"),
    "gemini-2.5-flash": _p("0.30", "2.50"),
}

DEFAULT_PRICE = Price(
    Decimal("15.00"),
    Decimal("75.00"),
    known=False,
    note="model not in the price table: charged the conservative default $15/$75 per 1M tokens",
)
FREE = Price(ZERO, ZERO, note="local server: no charge")

_DATED = re.compile(r"-(latest|\d{4}-\d{2}-\d{2}|\d{4})$")


def normalise_model(model: str) -> str:
    name = model.strip().lower().rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def price_for(
    model: str,
    *,
    free: bool = False,
    override: tuple[Decimal, Decimal] | None = None,
) -> Price:
    """The price of ``model``: the explicit override if any, else free for a local server,
    else the table or the conservative default."""
    if override is not None:
        return Price(override[0], override[1], note="price set by LLM_PRICE_*_PER_M")
    if free:
        return FREE
    name = normalise_model(model)
    if name in PRICES:
        return PRICES[name]
    undated = _DATED.sub("", name)
    if undated in PRICES:
        return PRICES[undated]
    return DEFAULT_PRICE


def call_cost(price: Price, input_tokens: int, output_tokens: int) -> Decimal:
    """Exact cost of a call, rounded up to the micro-dollar."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    raw = (Decimal(input_tokens) * price.input + Decimal(output_tokens) * price.output) / PER
    return raw.quantize(MONEY_QUANTUM, rounding=ROUND_CEILING)


# An upper bound on the input tokens of a request. Byte-level BPE tokenizers (OpenAI, xAI,
# Llama 3, Qwen...) never put less than one byte in a token, so a message's UTF-8 length bounds
# its tokens; the chat template adds a few tokens per message.
TOKENS_PER_MESSAGE = 16
TOKENS_PER_REQUEST = 16


def input_token_bound(messages: list[dict[str, str]]) -> int:
    return TOKENS_PER_REQUEST + sum(
        TOKENS_PER_MESSAGE + len(m["content"].encode("utf-8")) + len(m["role"]) for m in messages
    )


def worst_case_cost(
    price: Price, messages: list[dict[str, str]], max_output_tokens: int
) -> Decimal:
    """The most one request can cost: every input byte a token, every output token used."""
    return call_cost(price, input_token_bound(messages), max_output_tokens)
