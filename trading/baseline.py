"""The ``baseline`` forecaster: a favourite-longshot recalibration of the market price.

No key, no network, deterministic. The model (fitted offline, applied in exact Decimal math)::

    p = the quote's price: the YES bid/ask mid, else the last trade (``book_price``),
        clipped to [0.005, 0.995] (half a cent: the smallest mid a one-cent book shows)
    logit(q) = a + b · logit(p)            logit(x) = ln(x / (1 − x))
    probability = q, rounded to 6 decimals and kept inside [0.000001, 0.999999]

b > 1 pushes prices away from 0.5 (the market is under-confident: longshots cost too much,
favourites too little), b < 1 pulls them in; a < 0 lowers every YES price. a and b come from
``trading/data/baseline_fit.json``, which ``fit_baseline`` reproduces (``manage.py
evaluate_forecaster --fit-baseline --json trading/data/baseline_fit.json``); see
``BaselineForecaster`` for the data, the split and the figures.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Context, Decimal, localcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

from markets.exchange import MarketQuote
from trading import scoring
from trading.forecasters import ForecastResult

FIT_PATH = Path(__file__).resolve().parent / "data" / "baseline_fit.json"
MODEL = "logit(q) = a + b*logit(p)"
VERSION = "flb-1"
CONFIDENCE = Decimal("0.6")
P_MIN, P_MAX = Decimal("0.005"), Decimal("0.995")
Q_MIN, Q_MAX = Decimal("0.000001"), Decimal("0.999999")
QUANTUM = Decimal("0.000001")
_CONTEXT = Context(prec=34)

# Fit settings (documented in BaselineForecaster).
HORIZON_HOURS = 12
RIDGE = 1.0
VALIDATION_MODULUS = 5  # one event in five (by hash) is held out of the fit


def book_price(
    yes_bid: Decimal | None, yes_ask: Decimal | None, last_price: Decimal | None
) -> Decimal | None:
    """The price a forecast is made from, or None when the quote has none.

    The YES bid/ask mid when the book has a bid or an ask (a missing side is None; a bid of 0
    or an ask of 1 is an empty side, and one empty side still gives a mid: bid 0 / ask 0.04 →
    0.02), except a crossed book or one with both sides empty; then the last trade price when
    it is strictly inside (0, 1); else None.
    """
    if yes_bid is not None and yes_ask is not None:
        if 0 <= yes_bid <= yes_ask <= 1 and not (yes_bid == 0 and yes_ask == 1):
            return (yes_bid + yes_ask) / 2
    if last_price is not None and 0 < last_price < 1:
        return last_price
    return None


def recalibrate(price: Decimal, a: Decimal, b: Decimal) -> Decimal:
    """q = σ(a + b·logit(p)) in Decimal arithmetic (exactly rounded ln/exp), 6 decimals."""
    with localcontext(_CONTEXT):
        p = min(max(price, P_MIN), P_MAX)
        z = a + b * (p / (1 - p)).ln()
        q = 1 / (1 + (-z).exp())
    return min(max(q.quantize(QUANTUM), Q_MIN), Q_MAX)


@dataclass(frozen=True)
class BaselineFit:
    a: Decimal
    b: Decimal
    version: str = VERSION
    fit_events: frozenset[str] = frozenset()


@lru_cache(maxsize=4)
def load_fit(path: Path = FIT_PATH) -> BaselineFit:
    """The shipped coefficients (strings in the JSON, so they are read exactly)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("model") != MODEL:
        raise ValueError(f"{path}: model {data.get('model')!r} is not {MODEL!r}")
    return BaselineFit(
        a=Decimal(data["a"]),
        b=Decimal(data["b"]),
        version=data.get("version", VERSION),
        fit_events=frozenset(data.get("fit_events", ())),
    )


class BaselineForecaster:
    """Favourite-longshot recalibration of the market price, fitted on recorded settled markets.

    **Fit** (``fit_baseline`` on ``markets/data/kalshi``; coefficients and figures in
    ``trading/data/baseline_fit.json``): a = -0.479398, b = 1.273683, by maximum likelihood
    (logistic regression of the result on logit(price), ridge 1.0 towards a = 0, b = 1).
    One sample per settled market (all daily-high-temperature markets, 5 cities):

    - juliettemorrell: the first recorded trade price (``open_yes``), never ``close_yes``;
    - jetpackjules candles and market_logs: the last trade / book mid at or before
      ``close_time − 12 h`` (markets with no price by then are left out).

    Events are split by hash: an event is held out for validation when
    ``int(sha256(event_ticker)[:8], 16) % 5 == 0``; the fit uses only the other events, whose
    tickers the JSON lists (``fit_events``) so that an evaluation can leave them out.

    ======================  ===  ======  ============  ==============  ==========  ==========
    rows                    n    events  Brier market  Brier baseline  LogL market LogL base
    ======================  ===  ======  ============  ==============  ==========  ==========
    fit (in sample)         965  182     0.084800      0.079193        0.282607    0.258566
    validation (held out)   217  42      0.059731      0.055979        0.212688    0.183009
    ======================  ===  ======  ============  ==============  ==========  ==========

    **Evaluation** out of sample on ``trading/data/kalshi-questions`` (crypto, sports,
    financials, politics...; no event in common with the fit; ``manage.py evaluate_forecaster
    --forecaster baseline``, the 785 rows with a real pre-close price): Brier 0.051107 against
    the market's 0.051066 (skill vs the market −0.000803, i.e. no better), log loss 0.158521
    vs 0.166403, ECE 0.020092 vs 0.029936. The correction learned on weather markets makes the
    price better calibrated elsewhere but not more accurate, so it shows no skill against the
    market and the skill gate should keep it from trading directionally.

    **Confidence** is a constant 0.6: the model only reshapes the market's own price and has no
    information of its own, so its confidence does not depend on the price.
    """

    name = "baseline"

    def __init__(self, fit: BaselineFit | None = None) -> None:
        self.fit = fit or load_fit()

    @property
    def fit_events(self) -> frozenset[str]:
        """Events the coefficients were fitted on: an evaluation must leave them out."""
        return self.fit.fit_events

    def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult:
        price = book_price(quote.yes_bid, quote.yes_ask, quote.last_price)
        if price is None:
            return ForecastResult(
                None, None, valid=False, error="no price to forecast from", model=self.name
            )
        probability = recalibrate(price, self.fit.a, self.fit.b)
        return ForecastResult(
            probability=probability,
            confidence=CONFIDENCE,
            rationale=(
                f"Market price {price.normalize()} recalibrated for the favourite-longshot "
                f"bias: logit(q) = {self.fit.a} + {self.fit.b}·logit(p)."
            ),
            key_factors=[f"market price {price.normalize()}", f"fit {self.fit.version}"],
            model=self.name,
            prompt_version=self.fit.version,
            price_shown=True,
        )


# --- The offline fit (float math is fine here: it only produces the two coefficients) --------


@dataclass(frozen=True)
class FitSample:
    ticker: str
    event_ticker: str
    price: Decimal
    outcome: int  # 1 = yes
    source: str


def is_validation_event(event_ticker: str) -> bool:
    digest = hashlib.sha256(event_ticker.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % VALIDATION_MODULUS == 0


def _log_odds(price: Decimal | float) -> float:
    """log(p / (1 − p)) of a clipped price, computed exactly; the fit itself is statistics
    on these log-odds and runs in floats (it never touches money)."""
    p = price if isinstance(price, Decimal) else Decimal(str(price))
    p = min(max(p, P_MIN), P_MAX)
    return float((p / (1 - p)).ln())


def fit_logistic(
    samples: Sequence[tuple[Decimal | float, int]], *, ridge: float = RIDGE, max_iter: int = 100
) -> tuple[float, float]:
    """Maximise Σ log-likelihood − ridge/2·(a² + (b − 1)²) by Newton's method.

    ``samples`` are (price, outcome) pairs; prices are clipped like at run time. The ridge
    term keeps the Hessian invertible (separable or tiny data) and shrinks towards the
    identity map a = 0, b = 1 ("trust the market").
    """
    if not samples:
        raise ValueError("no samples to fit")
    xs = [_log_odds(p) for p, _ in samples]
    ys = [y for _, y in samples]
    a, b = 0.0, 1.0
    for _ in range(max_iter):
        ga, gb = -ridge * a, -ridge * (b - 1)
        haa = hbb = ridge
        hab = 0.0
        for x, y in zip(xs, ys, strict=True):
            q = 1 / (1 + math.exp(-(a + b * x)))
            w = q * (1 - q)
            ga += y - q
            gb += (y - q) * x
            haa += w
            hab += w * x
            hbb += w * x * x
        det = haa * hbb - hab * hab
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a + da, b + db
        if abs(da) < 1e-12 and abs(db) < 1e-12:
            break
    return a, b


def recorded_fit_samples(*, data_dir: Path, horizon_hours: int = HORIZON_HOURS) -> list[FitSample]:
    """One (price, result) sample per settled recorded market; see BaselineForecaster."""
    from markets.recorded import JULIETTE_FILE, close_time, recorded_data_parse

    data = recorded_data_parse(data_dir=data_dir)
    by_market: dict[str, list[tuple[datetime, Any]]] = {}
    for (ticker, ts), quote in data.snapshots.items():
        by_market.setdefault(ticker, []).append((ts, quote))
    juliette_name = Path(JULIETTE_FILE).name
    samples = []
    for ticker in sorted(data.markets):
        spec = data.markets[ticker]
        if spec.result not in ("yes", "no"):
            continue
        points = sorted(by_market.get(ticker, []), key=lambda item: item[0])
        if juliette_name in spec.origin:
            # Only the first recorded trade: the other point, close_yes, knows the outcome.
            source = "juliettemorrell open"
            points = points[:1]
        else:
            source = "jetpackjules"
            cutoff = close_time(spec.series, spec.event_date) - timedelta(hours=horizon_hours)
            points = [item for item in points if item[0] <= cutoff][-1:]
        if not points:
            continue
        quote = points[0][1]
        price = book_price(quote.yes_bid, quote.yes_ask, quote.last_price)
        if price is None:
            continue
        samples.append(
            FitSample(ticker, spec.event_ticker, price, 1 if spec.result == "yes" else 0, source)
        )
    return samples


def _figures(samples: Sequence[FitSample], a: Decimal, b: Decimal) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    ys = [s.outcome for s in samples]
    market = [s.price for s in samples]
    model = [recalibrate(s.price, a, b) for s in samples]
    return {
        "n": len(samples),
        "yes": sum(ys),
        "events": len({s.event_ticker for s in samples}),
        "brier_market": str(scoring.brier(market, ys)),
        "brier_baseline": str(scoring.brier(model, ys)),
        "log_loss_market": str(scoring.log_loss(market, ys)),
        "log_loss_baseline": str(scoring.log_loss(model, ys)),
        "by_source": dict(sorted(Counter(s.source for s in samples).items())),
    }


def fit_baseline(
    samples: Sequence[FitSample], *, ridge: float = RIDGE, data_note: str = ""
) -> dict[str, Any]:
    """Fit a, b on the non-validation events of ``samples``; report both splits.

    Returns the JSON document shipped as ``trading/data/baseline_fit.json``.
    """
    fit_rows = [s for s in samples if not is_validation_event(s.event_ticker)]
    held_out = [s for s in samples if is_validation_event(s.event_ticker)]
    a_f, b_f = fit_logistic([(s.price, s.outcome) for s in fit_rows], ridge=ridge)
    a, b = Decimal(str(round(a_f, 6))), Decimal(str(round(b_f, 6)))
    return {
        "model": MODEL,
        "version": VERSION,
        "a": str(a),
        "b": str(b),
        "ridge": str(ridge),
        "price_clip": [str(P_MIN), str(P_MAX)],
        "data": data_note,
        "samples": (
            "one per settled market: juliettemorrell first trade (open_yes); jetpackjules "
            f"last trade or book mid at or before close_time - {HORIZON_HOURS} h"
        ),
        "split": (
            f"validation events: int(sha256(event_ticker)[:8], 16) % {VALIDATION_MODULUS} == 0;"
            " the fit uses only the others"
        ),
        "fit": _figures(fit_rows, a, b),
        "validation": _figures(held_out, a, b),
        "fit_events": sorted({s.event_ticker for s in fit_rows}),
        "validation_events": sorted({s.event_ticker for s in held_out}),
    }
