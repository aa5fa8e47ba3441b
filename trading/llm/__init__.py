"""Language-model forecasting: one chat-completions client, strict output validation, a daily
budget shared across processes, every call recorded, forecasts reused until they go stale.

- ``client``: ``ChatClient`` for the OpenAI chat-completions protocol (xAI, OpenAI, OpenRouter,
  a local server, any compatible endpoint), timeouts and bounded retries;
- ``prices``: the per-model price table and exact Decimal costs;
- ``output``: strict validation of the JSON forecast;
- ``ledger``: the budget (reserve before, settle after) and the ``LLMCall`` record;
- ``forecaster``: ``LLMForecaster`` (``llm``), ``RecordedForecaster`` (``recorded``) and the
  factories ``llm_forecaster()`` / ``recorded_forecaster()``, the only readers of settings.

Prompts live in ``trading.prompts``.
"""

from __future__ import annotations

from trading.llm.client import PROVIDERS, ChatClient, LLMConfigError, LLMError, LLMResult, Provider
from trading.llm.forecaster import (
    LLMForecaster,
    RecordedForecaster,
    llm_client,
    llm_forecaster,
    recorded_forecaster,
)
from trading.llm.output import InvalidOutput, ParsedForecast, parse_forecast
from trading.llm.prices import PRICES, Price, call_cost, price_for

__all__ = [
    "PRICES",
    "PROVIDERS",
    "ChatClient",
    "InvalidOutput",
    "LLMConfigError",
    "LLMError",
    "LLMForecaster",
    "LLMResult",
    "ParsedForecast",
    "Price",
    "Provider",
    "RecordedForecaster",
    "call_cost",
    "llm_client",
    "llm_forecaster",
    "parse_forecast",
    "price_for",
    "recorded_forecaster",
]
