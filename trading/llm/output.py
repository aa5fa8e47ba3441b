"""Strict validation of a model's forecast reply. Anything doubtful is rejected.

The reply must be one JSON object with exactly four fields::

    {"probability": 0.62, "confidence": 0.7, "rationale": "...", "key_factors": ["...", "..."]}

Rules (each failure raises ``InvalidOutput`` with a reason; an invalid reply never trades):

- the whole reply is at most ``MAX_REPLY_CHARS`` characters;
- it is the JSON object alone. A Markdown code fence is accepted only when the reply is one
  fenced block and nothing else (```` ```json\\n{...}\\n``` ````): models add fences often, and
  a lone block is unambiguous. Text before or after the object, two objects, or a fence with
  anything around it are rejected;
- JSON as the standard says: ``NaN``/``Infinity`` literals, duplicate keys and trailing data
  are rejected;
- exactly the four fields: a missing or an extra one is rejected (an extra field such as
  ``"count": 1000`` is a sign the model was steered);
- ``probability`` and ``confidence`` are JSON numbers (a string such as ``"0.6"``, a boolean or
  null is rejected), finite, in [0, 1]; read as Decimal (never float) and rounded half-even to
  6 places, the precision of the ledger;
- control characters (NUL...) are removed from the texts; ``rationale`` is a non-empty string of at most ``MAX_RATIONALE_CHARS``; ``key_factors`` a list
  of at most ``MAX_FACTORS`` non-empty strings of at most ``MAX_FACTOR_CHARS`` each;
- a reply that starts like a refusal ("I'm sorry", "I can't") is reported as a refusal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

MAX_REPLY_CHARS = 4000
MAX_RATIONALE_CHARS = 1000
MAX_FACTORS = 8
MAX_FACTOR_CHARS = 200
FIELDS = ("probability", "confidence", "rationale", "key_factors")
QUANTUM = Decimal("0.000001")

_CONTROL = re.compile("[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]")
_FENCED = re.compile(r"```(?:json)?[ \t]*\n(.*?)\n[ \t]*```", re.S | re.I)
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry\b|i can(?:'|no)?t\b|i cannot|i won'?t|i will not|"
    r"i'?m (?:not able|unable)|i am (?:not able|unable)|as an ai\b)",
    re.I,
)


class InvalidOutput(ValueError):
    """The reply is not a valid forecast. ``refusal`` marks a model that declined."""

    def __init__(self, reason: str, *, refusal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal


@dataclass(frozen=True)
class ParsedForecast:
    probability: Decimal
    confidence: Decimal
    rationale: str
    key_factors: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "probability": self.probability,
            "confidence": self.confidence,
            "rationale": self.rationale,
            "key_factors": list(self.key_factors),
        }


def _no_constants(name: str) -> Any:
    raise InvalidOutput(f"not JSON: {name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidOutput(f"duplicate field {key!r}")
        result[key] = value
    return result


def _snippet(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _unfence(text: str) -> str:
    if not text.startswith("```"):
        return text
    match = _FENCED.fullmatch(text)
    if match is None:
        raise InvalidOutput("a code fence with other text around it, or not closed")
    return match.group(1).strip()


def _fraction(data: dict[str, Any], name: str) -> Decimal:
    value = data[name]
    if not isinstance(value, Decimal):
        kind = "a string" if isinstance(value, str) else type(value).__name__
        raise InvalidOutput(f"{name} is {kind}, expected a JSON number")
    if not value.is_finite():
        raise InvalidOutput(f"{name} is not finite")
    if value < 0 or value > 1:
        raise InvalidOutput(f"{name} {_snippet(str(value), 24)} is outside [0, 1]")
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidOutput(f"{name} is {type(value).__name__}, expected a string")
    value = _CONTROL.sub("", value).strip()
    if not value:
        raise InvalidOutput(f"{name} is empty")
    if len(value) > limit:
        raise InvalidOutput(f"{name} is longer than {limit} characters")
    return value


def parse_forecast(text: str | None) -> ParsedForecast:
    """The forecast in ``text``, or ``InvalidOutput`` saying why there is none."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidOutput("empty reply")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidOutput(
            f"reply too long ({len(text)} characters; the limit is {MAX_REPLY_CHARS})"
        )
    stripped = text.strip()
    if _REFUSAL.match(stripped):
        raise InvalidOutput(f"model refused: {_snippet(stripped)}", refusal=True)
    body = _unfence(stripped)
    if not body.startswith("{"):
        raise InvalidOutput(
            f"not JSON: the reply does not start with an object: {_snippet(body)!r}"
        )
    try:
        data = json.loads(
            body,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_no_constants,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"not JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise InvalidOutput("not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidOutput(f"not a JSON object but {type(data).__name__}")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise InvalidOutput(f"missing field(s): {', '.join(missing)}")
    extra = sorted(set(data) - set(FIELDS))
    if extra:
        raise InvalidOutput(f"unexpected field(s): {', '.join(_snippet(e, 40) for e in extra)}")
    probability = _fraction(data, "probability")
    confidence = _fraction(data, "confidence")
    rationale = _text(data["rationale"], "rationale", MAX_RATIONALE_CHARS)
    factors = data["key_factors"]
    if not isinstance(factors, list):
        raise InvalidOutput(f"key_factors is {type(factors).__name__}, expected a list")
    if len(factors) > MAX_FACTORS:
        raise InvalidOutput(f"key_factors has {len(factors)} items; at most {MAX_FACTORS}")
    key_factors = tuple(_text(f, "a key factor", MAX_FACTOR_CHARS) for f in factors)
    return ParsedForecast(probability, confidence, rationale, key_factors)
