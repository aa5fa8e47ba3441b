from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest

from markets.exchange import MarketQuote
from trading.baseline import (
    CONFIDENCE,
    FIT_PATH,
    BaselineFit,
    BaselineForecaster,
    FitSample,
    book_price,
    fit_baseline,
    fit_logistic,
    is_validation_event,
    load_fit,
    recalibrate,
)
from trading.forecasters import forecaster_for

D = Decimal
NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def quote(
    yes_bid: str | None = None, yes_ask: str | None = None, last: str | None = None
) -> MarketQuote:
    return MarketQuote(
        ticker="KXTEST-26MAY01-T1",
        event_ticker="KXTEST-26MAY01",
        status="active",
        close_time=datetime(2026, 5, 2, tzinfo=UTC),
        yes_bid=None if yes_bid is None else D(yes_bid),
        yes_ask=None if yes_ask is None else D(yes_ask),
        last_price=None if last is None else D(last),
    )


def test_it_is_the_baseline_named_in_settings() -> None:
    assert isinstance(forecaster_for("baseline"), BaselineForecaster)
    assert BaselineForecaster.name == "baseline"


def test_it_recalibrates_by_the_logit_formula() -> None:
    # a = 0, b = 2: logit(0.25) = ln(1/3), doubled ln(1/9), so q = (1/9) / (10/9) = 0.1.
    assert recalibrate(D("0.25"), D(0), D(2)) == D("0.100000")
    assert recalibrate(D("0.75"), D(0), D(2)) == D("0.900000")
    assert recalibrate(D("0.5"), D(0), D(2)) == D("0.500000")
    # a = 0, b = 1 is the identity.
    assert recalibrate(D("0.37"), D(0), D(1)) == D("0.370000")
    # a = ln 3, b = 1 at p = 0.5: odds 3, q = 0.75.
    assert recalibrate(D("0.5"), D(3).ln(), D(1)) == D("0.750000")


def test_the_shipped_fit_is_a_favourite_longshot_correction() -> None:
    fit = load_fit()
    expected_at_half = 1 / (1 + math.exp(-float(fit.a)))  # logit(0.5) = 0
    forecaster = BaselineForecaster()
    result = forecaster.forecast(quote("0.49", "0.51"), now=NOW)
    assert result.probability == D(str(round(expected_at_half, 6)))
    assert fit.b > 1  # extremises: longshots lower, favourites higher than the price
    low = forecaster.forecast(quote(last="0.05"), now=NOW).probability
    high = forecaster.forecast(quote(last="0.95"), now=NOW).probability
    assert low is not None and high is not None
    assert low < D("0.05") and high > D("0.95")


def test_it_is_deterministic_and_returns_six_place_decimals_in_the_unit_interval() -> None:
    one, two = BaselineForecaster(), BaselineForecaster()
    for bid, ask in [("0.01", "0.03"), ("0.4", "0.44"), ("0.97", "0.99"), ("0", "0.01")]:
        first = one.forecast(quote(bid, ask), now=NOW)
        assert first == two.forecast(quote(bid, ask), now=NOW)
        assert first == one.forecast(quote(bid, ask), now=NOW)
        assert first.valid and first.price_shown
        assert isinstance(first.probability, Decimal) and isinstance(first.confidence, Decimal)
        assert first.probability.as_tuple().exponent == -6
        assert D(0) < first.probability < D(1)
        assert first.confidence == CONFIDENCE
        assert first.model == "baseline" and first.prompt_version == load_fit().version


def test_it_is_monotone_in_the_price() -> None:
    forecaster = BaselineForecaster()
    prices = [D(n) / 1000 for n in range(0, 1001, 5)]
    probs = [forecaster.forecast(quote(last=str(p)), now=NOW).probability for p in prices[1:-1]]
    assert all(a is not None and b is not None and a <= b for a, b in pairwise(probs))
    # Strictly increasing where prices are not clipped.
    inner = [forecaster.forecast(quote(last=f"0.{n:02d}"), now=NOW).probability
             for n in range(1, 100)]  # fmt: skip
    assert all(a < b for a, b in pairwise(inner))  # type: ignore[operator]


def test_extreme_prices_are_clipped_not_certain() -> None:
    forecaster = BaselineForecaster(BaselineFit(a=D(0), b=D(5)))
    low = forecaster.forecast(quote(last="0.0001"), now=NOW).probability
    high = forecaster.forecast(quote(last="0.9999"), now=NOW).probability
    assert low == D("0.000001") and high == D("0.999999")


def test_it_uses_the_mid_then_the_last_price() -> None:
    identity = BaselineForecaster(BaselineFit(a=D(0), b=D(1)))
    assert identity.forecast(quote("0.40", "0.60", "0.10"), now=NOW).probability == D("0.5")
    assert identity.forecast(quote(None, "0.60", "0.30"), now=NOW).probability == D("0.3")
    # An empty book (bid 0 / ask 1) is no book: the last trade is used.
    assert identity.forecast(quote("0", "1", "0.22"), now=NOW).probability == D("0.22")


@pytest.mark.parametrize(
    ("bid", "ask", "last"),
    [(None, None, None), ("0", "1", None), ("0", "1", "0"), (None, "0.5", None),
     ("0.6", "0.4", None), (None, None, "1")],
)  # fmt: skip
def test_it_is_invalid_without_a_price(bid: str | None, ask: str | None, last: str | None) -> None:
    result = BaselineForecaster().forecast(quote(bid, ask, last), now=NOW)
    assert not result.valid
    assert result.probability is None and result.confidence is None
    assert result.error == "no price to forecast from"


def test_book_price() -> None:
    assert book_price(D("0.2"), D("0.3"), None) == D("0.25")
    assert book_price(D("0"), D("0.01"), None) == D("0.005")  # one-sided book
    assert book_price(D("0.99"), D("1"), None) == D("0.995")
    assert book_price(D("0"), D("1"), D("0.4")) == D("0.4")  # empty book
    assert book_price(D("0.5"), D("0.4"), D("0.45")) == D("0.45")  # crossed
    assert book_price(None, None, D("0")) is None
    assert book_price(None, None, None) is None


def test_fit_logistic_recovers_known_coefficients() -> None:
    # Expected counts from a known model: logit(q) = -0.4 + 1.5·logit(p).
    samples: list[tuple[float, int]] = []
    for k in range(1, 20):
        p = k / 20
        q = 1 / (1 + math.exp(-(-0.4 + 1.5 * math.log(p / (1 - p)))))
        yes = round(4000 * q)
        samples += [(p, 1)] * yes + [(p, 0)] * (4000 - yes)
    a, b = fit_logistic(samples, ridge=0.0)
    assert a == pytest.approx(-0.4, abs=0.01) and b == pytest.approx(1.5, abs=0.01)


def test_fit_logistic_stays_finite_on_separable_data() -> None:
    a, b = fit_logistic([(0.2, 0), (0.3, 0), (0.7, 1), (0.8, 1)])
    assert math.isfinite(a) and math.isfinite(b) and b > 1


def _sample(event: str, n: int, price: str, outcome: int) -> FitSample:
    return FitSample(f"{event}-M{n}", event, D(price), outcome, "test")


def test_fit_baseline_never_scores_its_fit_rows_as_validation() -> None:
    events = [f"KXTEST-E{n}" for n in range(40)]
    samples = [
        _sample(e, n, price, outcome)
        for e in events
        for n, (price, outcome) in enumerate([("0.1", 0), ("0.3", 0), ("0.6", 1), ("0.8", 1)])
    ]
    doc = fit_baseline(samples)
    fit_events, held_out = set(doc["fit_events"]), set(doc["validation_events"])
    assert fit_events and held_out and not fit_events & held_out
    assert held_out == {e for e in events if is_validation_event(e)}
    assert doc["fit"]["n"] + doc["validation"]["n"] == len(samples)
    # The coefficients come from the fit rows only.
    a, b = fit_logistic([(s.price, s.outcome) for s in samples if s.event_ticker in fit_events])
    assert doc["a"] == str(D(str(round(a, 6)))) and doc["b"] == str(D(str(round(b, 6))))
    for split in ("fit", "validation"):
        assert D(doc[split]["brier_baseline"]) < D(doc[split]["brier_market"])


def test_the_shipped_fit_file_and_the_docstring_agree() -> None:
    doc = json.loads(Path(FIT_PATH).read_text(encoding="utf-8"))
    fit = load_fit()
    assert (str(fit.a), str(fit.b)) == (doc["a"], doc["b"])
    assert fit.fit_events == frozenset(doc["fit_events"])
    assert not fit.fit_events & set(doc["validation_events"])
    docstring = BaselineForecaster.__doc__ or ""
    for figure in (doc["a"], doc["b"], doc["fit"]["brier_market"],
                   doc["fit"]["brier_baseline"], doc["validation"]["brier_market"],
                   doc["validation"]["brier_baseline"], str(doc["fit"]["n"]),
                   str(doc["validation"]["n"])):  # fmt: skip
        assert figure in docstring
