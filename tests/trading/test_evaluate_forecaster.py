from __future__ import annotations

import ast
import csv
import json
import shutil
import sys
import types
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from markets.exchange import MarketQuote
from trading.baseline import FIT_PATH
from trading.evaluation import (
    SKIP_AFTER_CLOSE,
    SKIP_AFTER_EXPIRATION,
    SKIP_DUPLICATE,
    SKIP_NO_PRICE,
    SKIP_NO_RESULT,
    SKIP_NO_SNAPSHOT,
    SKIP_NOT_ACTIVE,
    SKIP_SETTLED_PRICES,
    QuestionDataError,
    QuestionText,
    evaluate,
    read_questions,
)
from trading.forecasters import ForecastResult

D = Decimal
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "questions-small"
JSONL = "benrossjenkins-prophet-hacks-agent/resolved_markets.jsonl"
CSV = "prashanthbhaskara-prophethacks/subset_data_100.csv"

# The fixture's rows with a real pre-close price, read off the files by hand:
# ticker → (price = bid/ask mid, result).
USABLE = {
    "KXATPCHALLENGERMATCH-26MAY14ANDMOL-MOL": ("0.675", 1),  # 0.67 / 0.68
    "KXATPCHALLENGERMATCH-26MAY14ANDMOL-AND": ("0.30", 0),  # 0.27 / 0.33
    "KXNCAABBGAME-26MAY140035CNMHAW-HAW": ("0.995", 1),  # 0.99 / 1.00
    "KXNCAABBGAME-26MAY140035CNMHAW-CNM": ("0.005", 0),  # 0.00 / 0.01
    "KXBTCD-26MAY1413-T81399.99": ("0.66", 1),  # 0.65 / 0.67
    "KXRTNAKEDGUN-45": ("0.50", 1),  # 12 / 88 cents
    "KXRTNAKEDGUN-60": ("0.475", 1),  # 8 / 87
    "KXRTNAKEDGUN-75": ("0.29", 1),  # 17 / 41
    "KXRTNAKEDGUN-90": ("0.22", 0),  # 6 / 38
    "KXMLBGAME-25JUL06NYYNYM-NYM": ("0.335", 0),  # 32 / 35
    "KXMLBGAME-25JUL06NYYNYM-NYY": ("0.67", 1),  # 66 / 68
}
# Σ (p − y)² = 1.610525 over 11 rows.
BRIER_MARKET = "0.146411"


class Spy:
    """Records what it is shown; answers 0.5."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[tuple[MarketQuote, datetime]] = []

    def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult:
        self.seen.append((quote, now))
        return ForecastResult(D("0.5"), D("0.5"))


class TextSpy(Spy):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[QuestionText] = []

    def forecast_question(
        self, quote: MarketQuote, question: QuestionText, *, now: datetime
    ) -> ForecastResult:
        self.texts.append(question)
        return self.forecast(quote, now=now)


def run(*args: Any, **kwargs: Any) -> str:
    out = StringIO()
    call_command("evaluate_forecaster", *args, no_progress=True, stdout=out, stderr=out, **kwargs)
    return out.getvalue()


# --- Reading the folder format --------------------------------------------------------------


def test_it_reads_the_fixture_and_keeps_only_real_pre_close_prices() -> None:
    questions = read_questions(FIXTURE)
    assert [(f.path, f.rows, f.usable) for f in questions.files] == [(JSONL, 6, 5), (CSV, 18, 6)]
    assert questions.skipped() == {
        SKIP_AFTER_CLOSE: 1,  # KXTEMPNYCH snapshotted after close
        SKIP_AFTER_EXPIRATION: 4,  # SHEHIJ and ARNOPE, snapshotted after the match
        SKIP_NO_SNAPSHOT: 8,  # KXRTNAKEDGUN labels with no market_info
    }
    by_ticker = {r.ticker: r for r in questions.rows}
    mol = by_ticker["KXATPCHALLENGERMATCH-26MAY14ANDMOL-MOL"]
    assert mol.category == "Sports" and mol.event_ticker == "KXATPCHALLENGERMATCH-26MAY14ANDMOL"
    assert mol.title.startswith("Will ") and "resolves" in mol.rules
    assert mol.last_price is None  # "0.0000" = no trade in that candle
    nym = by_ticker["KXMLBGAME-25JUL06NYYNYM-NYM"]
    assert nym.category == "Sports" and nym.event_title.startswith("New York")
    assert "resolves to Yes" in nym.rules
    assert all(isinstance(r.price, Decimal) for r in questions.usable())


def test_usable_prices_and_results_match_the_hand_read_values() -> None:
    usable = {r.ticker: (r.price, r.result) for r in read_questions(FIXTURE).usable()}
    assert usable == {t: (D(p), y) for t, (p, y) in USABLE.items()}


def _write_csv(path: Path, events: list[dict[str, Any]]) -> None:
    header = ["event_ticker", "title", "category", "markets", "close_time", "market_outcome",
              "sources", "market_info", "snapshot_time", "submission_id",
              "submission_created_at"]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for event in events:
            writer.writerow({k: event.get(k, "") for k in header})


def _market(ticker: str, bid: int, ask: int, last: int, **kw: Any) -> dict[str, Any]:
    info = {
        "ticker": ticker, "event_ticker": "KXT-1", "title": f"Will {ticker}?",
        "yes_sub_title": ticker, "rules_primary": "Resolves Yes if so.", "rules_secondary": "",
        "close_time": "2025-07-10T00:00:00Z", "expected_expiration_time": "2025-07-09T00:00:00Z",
        "status": "active", "result": "", "yes_bid": bid, "yes_ask": ask, "last_price": last,
    }  # fmt: skip
    info.update(kw)
    return info


def test_csv_edge_cases_empty_book_status_and_crossed(tmp_path: Path) -> None:
    infos = {
        "empty-with-trade": _market("KXT-1-A", 0, 100, 37),
        "empty-no-trade": _market("KXT-1-B", 0, 100, 0),
        "finalized": _market("KXT-1-C", 40, 45, 44, status="finalized"),
        "crossed": _market("KXT-1-D", 60, 40, 0),
    }
    _write_csv(tmp_path / "x" / "subset.csv", [{
        "event_ticker": "KXT-1", "title": "T", "category": "Economics",
        "market_outcome": repr({k: 1 for k in infos}), "market_info": repr(infos),
        "snapshot_time": "2025-07-01 12:00:00+00:00", "sources": "[{'id': UUID('x')}]",
    }])  # fmt: skip
    rows = {r.ticker: r for r in read_questions(tmp_path).rows}
    assert rows["KXT-1-A"].usable and rows["KXT-1-A"].price == D("0.37")
    assert rows["KXT-1-B"].skip_reason == SKIP_NO_PRICE
    assert rows["KXT-1-C"].skip_reason == SKIP_NOT_ACTIVE
    assert rows["KXT-1-D"].skip_reason == SKIP_NO_PRICE


def test_a_malformed_file_is_named_with_its_row(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"event": {}}\n', encoding="utf-8")
    with pytest.raises(QuestionDataError, match=r"a\.jsonl, line 1"):
        read_questions(tmp_path)
    (tmp_path / "a.jsonl").unlink()
    (tmp_path / "b.csv").write_text("ticker,price\nX,1\n", encoding="utf-8")
    with pytest.raises(QuestionDataError, match=r"b\.csv, row 1: missing column"):
        read_questions(tmp_path)
    with pytest.raises(QuestionDataError, match="not a folder"):
        read_questions(tmp_path / "nope")


def test_a_ticker_is_scored_once_across_files(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    shutil.copy(FIXTURE / JSONL, tmp_path / "zz-copy.jsonl")
    questions = read_questions(tmp_path)
    assert len(questions.usable()) == len(USABLE)
    assert questions.skipped()[SKIP_DUPLICATE] == 5
    assert {r.source for r in questions.usable() if r.ticker.startswith("KXBTCD")} == {JSONL}


def _write_parquet(folder: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        ("KXMLBGAME-25JUL01AB-A", "KXMLBGAME-25JUL01AB", "yes", 99),
        ("KXMLBGAME-25JUL01AB-B", "KXMLBGAME-25JUL01AB", "no", 1),
        ("KXUFCFIGHT-25JUL02CD-C", "KXUFCFIGHT-25JUL02CD", "", 50),
    ]
    table = pa.table({
        "ticker": [r[0] for r in rows], "event_ticker": [r[1] for r in rows],
        "title": [f"Will {r[0]} win?" for r in rows], "subtitle": [None] * 3,
        "yes_sub_title": ["A", "B", "C"], "rules_primary": ["If it wins, Yes."] * 3,
        "rules_secondary": [""] * 3, "close_time": ["2025-07-02T03:00:00Z"] * 3,
        "result": [r[2] for r in rows], "last_price": [r[3] for r in rows],
        "category": pa.array([None] * 3, pa.float64()),
    })  # fmt: skip
    pq.write_table(table, folder / "kalshi_markets.parquet")
    (folder / "kalshi_series_categories.json").write_text(
        json.dumps({"KXMLBGAME": "Sports", "KXUFCFIGHT": "Sports"}), encoding="utf-8"
    )


def test_parquet_rows_are_read_with_categories_but_never_scored(tmp_path: Path) -> None:
    _write_parquet(tmp_path / "p")
    questions = read_questions(tmp_path)
    assert [(f.path, f.format, f.rows, f.usable) for f in questions.files] == [
        ("p/kalshi_markets.parquet", "parquet", 3, 0)
    ]
    rows = {r.ticker: r for r in questions.rows}
    assert rows["KXMLBGAME-25JUL01AB-A"].category == "Sports"
    assert rows["KXMLBGAME-25JUL01AB-A"].result == 1
    assert rows["KXMLBGAME-25JUL01AB-A"].price is None  # 99¢ was read after settlement
    assert questions.skipped() == {SKIP_SETTLED_PRICES: 2, SKIP_NO_RESULT: 1}


def test_without_pyarrow_the_parquet_file_is_noted_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_parquet(tmp_path / "p")
    shutil.copytree(FIXTURE, tmp_path / "q")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow → ImportError
    questions = read_questions(tmp_path)
    assert len(questions.usable()) == len(USABLE)
    assert any("pyarrow is not installed" in note for note in questions.notes)


# --- What the forecaster is shown -----------------------------------------------------------


def test_the_forecaster_never_sees_the_result() -> None:
    questions = read_questions(FIXTURE)
    spy = TextSpy()
    evaluate(spy, questions)
    assert {q.ticker for q, _ in spy.seen} == set(USABLE)  # no row without a price is asked
    by_ticker = {r.ticker: r for r in questions.rows}
    for quote, now in spy.seen:
        assert quote.result == "" and quote.status == "active"
        assert quote.mid == by_ticker[quote.ticker].price
        assert now == quote.observed_at and quote.close_time and now < quote.close_time
    assert all("result" not in {f.name for f in fields(t)} for t in spy.texts)
    assert len(spy.texts) == len(USABLE)


def _flip_results(folder: Path) -> None:
    jsonl = folder / JSONL
    lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    for obj in lines:
        obj["result"] = {"yes": "no", "no": "yes"}[obj["result"]]
    jsonl.write_text("".join(json.dumps(o) + "\n" for o in lines), encoding="utf-8")
    path = folder / CSV
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, records = reader.fieldnames, list(reader)
    for record in records:
        outcome = ast.literal_eval(record["market_outcome"])
        record["market_outcome"] = repr({k: 1 - v for k, v in outcome.items()})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header or [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def test_the_inputs_are_the_same_whatever_the_results(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    _flip_results(tmp_path)
    flipped = read_questions(tmp_path)
    assert {r.ticker: r.result for r in flipped.usable()} == {
        t: 1 - y for t, (_, y) in USABLE.items()
    }
    original_spy, flipped_spy = TextSpy(), TextSpy()
    evaluate(original_spy, read_questions(FIXTURE))
    evaluate(flipped_spy, flipped)
    assert original_spy.seen == flipped_spy.seen
    assert original_spy.texts == flipped_spy.texts


def test_invalid_answers_and_errors_are_counted_and_left_out_of_both_metrics() -> None:
    class Picky:
        name = "picky"

        def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult:
            if quote.ticker.startswith("KXRTNAKEDGUN"):
                return ForecastResult(None, None, valid=False, error="refused")
            if quote.ticker.startswith("KXBTCD"):
                raise RuntimeError("boom")
            if quote.ticker.endswith("-NYM"):
                return ForecastResult(0.3, D("0.5"))  # type: ignore[arg-type]  # a float
            return ForecastResult(quote.mid, D("0.5"))

    result = evaluate(Picky(), read_questions(FIXTURE))
    assert result.invalid == {
        "refused": 4,
        "RuntimeError: boom": 1,
        "probability is not a Decimal in [0, 1]": 1,
    }
    report = result.as_json()
    assert report["n"] == 5 and report["rows_invalid"] == 6
    assert report["brier_forecaster"] == report["brier_market"]  # same rows on both sides


def test_an_exhausted_budget_stops_the_run_and_keeps_what_was_scored() -> None:
    class Budgeted(Spy):
        def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult:
            if len(self.seen) >= 3:
                self.seen.append((quote, now))
                return ForecastResult(
                    None, None, valid=False, error="budget", budget_exhausted=True
                )
            return super().forecast(quote, now=now)

    spy = Budgeted()
    result = evaluate(spy, read_questions(FIXTURE))
    assert len(spy.seen) == 4 and len(result.scored) == 3
    assert result.stopped and result.as_json()["stopped_early"] == result.stopped
    assert result.as_json()["n"] == 3


def test_a_forecaster_is_not_scored_on_its_fit_events() -> None:
    class Fitted(Spy):
        fit_events = frozenset({"KXRTNAKEDGUN", "KXBTCD-26MAY1413"})

    spy = Fitted()
    report = evaluate(spy, read_questions(FIXTURE)).as_json()
    assert report["rows_excluded_fit_events"] == 5
    assert report["n"] == len(USABLE) - 5
    assert not {q.event_ticker for q, _ in spy.seen} & Fitted.fit_events


# --- The command ----------------------------------------------------------------------------


def test_the_command_scores_the_market_and_writes_the_json(tmp_path: Path) -> None:
    out = run(data=FIXTURE, forecaster="market", json=tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["n"] == len(USABLE)
    assert report["brier_market"] == report["brier_forecaster"] == BRIER_MARKET
    assert report["brier_skill_vs_market"] == "0.000000"
    for key in ("log_loss_forecaster", "ece_forecaster", "log_loss_market", "ece_market"):
        assert D(report[key]) >= 0
    assert report["rows_read"] == 24 and report["rows_usable"] == 11
    assert report["skipped"] == {
        SKIP_NO_SNAPSHOT: 8, SKIP_AFTER_CLOSE: 1, SKIP_AFTER_EXPIRATION: 4
    }  # fmt: skip
    assert set(report["categories"]) == {"Crypto", "Entertainment", "Sports"}
    assert report["categories"]["Sports"]["n"] == 6
    assert len(report["reliability_forecaster"]) == 10
    assert sum(b["count"] for b in report["reliability_market"]) == 11
    assert "Brier F" in out and "Reliability — ALL" in out and "Entertainment" in out
    assert BRIER_MARKET in out


def test_the_command_scores_the_baseline(tmp_path: Path) -> None:
    out = run(data=FIXTURE, forecaster="baseline", json=tmp_path / "r.json", limit=4)
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["forecaster"] == "baseline" and report["n"] == 4
    for key in ("n", "brier_forecaster", "brier_market", "log_loss_forecaster", "ece_forecaster"):
        assert report[key] is not None
    assert report["brier_forecaster"] != report["brier_market"]
    assert "Forecaster: baseline" in out and "4 scored" in out


def test_the_default_data_reproduces_the_shipped_evaluation() -> None:
    shipped = json.loads((FIT_PATH.parent / "baseline_evaluation.json").read_text("utf-8"))
    out = run()
    assert f"ALL{'':21} {shipped['n']:>5} {shipped['brier_forecaster']:>9} " in out
    assert shipped["n"] == 785
    assert shipped["brier_market"] in out and shipped["brier_skill_vs_market"] in out


def test_llm_is_refused_until_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trading.llm", types.ModuleType("trading.llm"))
    with pytest.raises(CommandError, match="LLM forecaster is not configured"):
        run(data=FIXTURE, forecaster="llm")


def test_llm_is_used_when_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("trading.llm")
    module.LLMForecaster = TextSpy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trading.llm", module)
    assert "Forecaster: spy" in run(data=FIXTURE, forecaster="llm")


def test_the_command_reports_bad_input() -> None:
    with pytest.raises(CommandError, match="not a folder"):
        run(data=FIXTURE / "missing")
    with pytest.raises(CommandError, match="--limit"):
        run(data=FIXTURE, limit=0)


def test_fit_baseline_reproduces_the_shipped_coefficients(tmp_path: Path) -> None:
    out = run(fit_baseline=True, recorded=settings.RECORDED_DATA_DIR, json=tmp_path / "fit.json")
    fitted = json.loads((tmp_path / "fit.json").read_text(encoding="utf-8"))
    shipped = json.loads(FIT_PATH.read_text(encoding="utf-8"))
    assert fitted == shipped
    assert f'"a": "{shipped["a"]}"' in out
