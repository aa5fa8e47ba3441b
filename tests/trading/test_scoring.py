from __future__ import annotations

from decimal import Decimal

import pytest

from trading import scoring

D = Decimal


def test_brier_matches_a_hand_computation() -> None:
    # ((0.8 − 1)² + (0.3 − 0)²) / 2 = (0.04 + 0.09) / 2
    assert scoring.brier([D("0.8"), D("0.3")], [1, 0]) == D("0.065000")


def test_brier_rounds_the_exact_mean_half_even_to_six_places() -> None:
    # (0.81 + 0.01 + 0.01) / 3 = 0.27666…
    result = scoring.brier([D("0.1")] * 3, [1, 0, 0])
    assert result == D("0.276667")
    assert result.as_tuple().exponent == -6


def test_floats_are_read_by_their_decimal_repr() -> None:
    assert scoring.brier([0.8, 0.3], [1, 0]) == D("0.065000")
    assert scoring.brier([0.1], [0]) == D("0.010000")  # not 0.010000000000000002


def test_brier_of_perfect_and_of_worst_forecasts() -> None:
    assert scoring.brier([1, 0], [1, 0]) == D("0")
    assert scoring.brier([0, 1], [1, 0]) == D("1")


def test_log_loss_matches_a_hand_computation() -> None:
    # (−ln 0.8 − ln 0.7) / 2 = (0.2231435513 + 0.3566749439) / 2 = 0.2899092476
    assert scoring.log_loss([D("0.8"), D("0.3")], [1, 0]) == D("0.289909")


def test_log_loss_clips_certain_forecasts_at_eps() -> None:
    # A certain and wrong forecast costs −ln(1e-6) = 13.815510558 instead of infinity.
    assert scoring.log_loss([D(0)], [1]) == D("13.815511")
    assert scoring.log_loss([D(1)], [0]) == D("13.815511")
    # A certain and right forecast costs −ln(1 − 1e-6) ≈ 1.0000005e-6.
    assert scoring.log_loss([D(1)], [1]) == D("0.000001")
    # A wider eps caps the cost lower: −ln(0.01) = 4.605170.
    assert scoring.log_loss([D(0)], [1], eps=D("0.01")) == D("4.605170")


def test_ece_matches_a_hand_computation() -> None:
    # Bins: [0, 0.1): 0.05 → 0 (gap 0.05, weight 1/4); [0.1, 0.2): 0.15, 0.15 → 1, 0
    # (mean 0.15, rate 0.5, gap 0.35, weight 2/4); [0.9, 1]: 0.95 → 1 (gap 0.05, weight 1/4).
    # ECE = 0.0125 + 0.175 + 0.0125 = 0.2
    probs = [D("0.05"), D("0.15"), D("0.15"), D("0.95")]
    assert scoring.ece(probs, [0, 1, 0, 1]) == D("0.200000")


def test_ece_is_zero_when_every_bin_is_calibrated() -> None:
    assert scoring.ece([D("0.5"), D("0.5")], [1, 0]) == D("0")


def test_reliability_table_has_ten_bins_with_counts_means_and_rates() -> None:
    probs = [D("0.05"), D("0.15"), D("0.15"), D("0.1"), D("0.95"), D(1)]
    table = scoring.reliability_table(probs, [0, 1, 0, 0, 1, 1])
    assert len(table) == 10
    assert [b.count for b in table] == [1, 3, 0, 0, 0, 0, 0, 0, 0, 2]
    assert (table[0].lower, table[0].upper) == (D(0), D("0.1"))
    assert (table[9].lower, table[9].upper) == (D("0.9"), D(1))
    # 0.1 sits on a boundary and belongs to the upper bin: (0.15 + 0.15 + 0.1) / 3.
    assert table[1].mean_forecast == D("0.133333")
    assert table[1].observed_rate == D("0.333333")
    assert table[2].mean_forecast is None and table[2].observed_rate is None
    # 1.0 falls in the last bin.
    assert table[9].mean_forecast == D("0.975000") and table[9].observed_rate == D("1.000000")
    assert table[9].as_dict()["bin"] == "[0.9, 1]"
    assert table[0].as_dict()["bin"] == "[0, 0.1)"


def test_bin_index_edges() -> None:
    assert scoring.bin_index(D(0)) == 0
    assert scoring.bin_index(D("0.099999")) == 0
    assert scoring.bin_index(D("0.1")) == 1
    assert scoring.bin_index(D("0.9")) == 9
    assert scoring.bin_index(D(1)) == 9


def test_brier_skill_against_a_reference() -> None:
    assert scoring.brier_skill(D("0.05"), D("0.1")) == D("0.5")
    assert scoring.brier_skill(D("0.1"), D("0.1")) == D("0")
    assert scoring.brier_skill(D("0.2"), D("0.1")) == D("-1")
    assert scoring.brier_skill(D("0.051107"), D("0.051066")) == D("-0.000803")
    assert scoring.brier_skill(D("0.1"), D(0)) is None


def test_base_rate() -> None:
    assert scoring.base_rate([1, 0, 0]) == D("0.333333")


@pytest.mark.parametrize(
    ("probs", "ys"),
    [
        ([], []),
        ([D("0.5")], [1, 0]),
        ([D("1.5")], [1]),
        ([D("-0.1")], [1]),
        ([float("nan")], [1]),
        ([D("NaN")], [1]),
        ([float("inf")], [1]),
        ([True], [1]),
        (["0.5"], [1]),
        ([D("0.5")], [2]),
        ([D("0.5")], [D("0.5")]),
    ],
)
def test_it_refuses_bad_inputs(probs: list[object], ys: list[object]) -> None:
    with pytest.raises(ValueError):
        scoring.brier(probs, ys)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        scoring.log_loss(probs, ys)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        scoring.ece(probs, ys)  # type: ignore[arg-type]


def test_it_refuses_a_bad_eps_or_a_negative_brier() -> None:
    with pytest.raises(ValueError):
        scoring.log_loss([D("0.5")], [1], eps=D(0))
    with pytest.raises(ValueError):
        scoring.brier_skill(D("-0.1"), D("0.1"))
