"""The bulk helpers write what the ORM would, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from unittest import skipUnless

from django.db import connection
from django.test import TestCase

from markets import bulk
from markets.models import Market
from tests.base import make_event, make_market
from trading.models import Decision, Forecast


class InsertRowsTests(TestCase):
    def setUp(self):
        self.market = make_market()

    def test_it_returns_the_new_keys_in_row_order_and_fills_defaults(self):
        when = datetime(2026, 3, 1, 12, tzinfo=UTC)
        rows = [
            {
                "market_id": self.market.pk,
                "forecaster": f"f{i}",
                "created_at": when,
                "probability": Decimal(f"0.{i + 1}"),
            }
            for i in range(3)
        ]
        ids = bulk.insert_rows(Forecast, rows)
        self.assertEqual(len(set(ids)), 3)
        stored = {f.pk: f for f in Forecast.objects.filter(pk__in=ids)}
        for i, pk in enumerate(ids):
            forecast = stored[pk]
            self.assertEqual(forecast.forecaster, f"f{i}")
            self.assertEqual(forecast.created_at, when)
            self.assertEqual(forecast.probability, Decimal(f"0.{i + 1}"))
            # Defaults, as the model declares them.
            self.assertIs(forecast.valid, True)
            self.assertEqual(forecast.key_factors, [])
            self.assertEqual(forecast.mode, "paper")
            self.assertIsNone(forecast.confidence)

    def test_json_columns_use_the_fields_encoder_and_money_stays_exact(self):
        [pk] = bulk.insert_rows(
            Decision,
            [
                {
                    "market_id": self.market.pk,
                    "reason": "edge_too_small",
                    "price": Decimal("0.4213"),
                    "edge": Decimal("-0.000001"),
                    "details": {"bid": Decimal("0.4100"), "checks": [{"passed": False}]},
                }
            ],
        )
        decision = Decision.objects.get(pk=pk)
        self.assertEqual(decision.price, Decimal("0.4213"))
        self.assertEqual(decision.edge, Decimal("-0.000001"))
        # DjangoJSONEncoder writes a Decimal as its exact string.
        self.assertEqual(decision.details, {"bid": "0.4100", "checks": [{"passed": False}]})

    def test_an_unknown_column_is_refused_before_anything_is_written(self):
        with self.assertRaisesMessage(ValueError, "no column(s) ['marker_id']"):
            bulk.insert_rows(Forecast, [{"market_id": self.market.pk}, {"marker_id": 1}])
        self.assertEqual(Forecast.objects.count(), 0)

    def test_nothing_to_insert_costs_no_query(self):
        with self.assertNumQueries(0):
            self.assertEqual(bulk.insert_rows(Forecast, []), [])


class IdsByKeyTests(TestCase):
    def test_it_maps_each_known_key_to_its_row_and_leaves_unknown_ones_out(self):
        event = make_event()
        # More keys than an IN list of placeholders would take in one slice.
        n = bulk.IN_CHUNK + 7
        Market.objects.bulk_create(
            [Market(ticker=f"BULK-{i}", event=event, status="active") for i in range(n)]
        )
        expected = dict(
            Market.objects.filter(ticker__startswith="BULK-").values_list("ticker", "pk")
        )
        keys = [f"BULK-{i}" for i in range(n)] + ["NOT-THERE"]
        with self.assertNumQueries(1):
            self.assertEqual(bulk.ids_by_key(Market, "ticker", keys), expected)

    def test_no_keys_no_query(self):
        with self.assertNumQueries(0):
            self.assertEqual(bulk.ids_by_key(Market, "ticker", []), {})


@skipUnless(connection.vendor == "postgresql", "COPY is PostgreSQL's")
class CopyDictsTests(TestCase):
    def test_it_streams_rows_with_keys_from_the_sequence(self):
        market = make_market()
        rows = (
            {"market_id": market.pk, "forecaster": f"s{i}", "probability": Decimal("0.5")}
            for i in range(3)
        )
        self.assertEqual(bulk.copy_dicts(Forecast, rows), 3)
        self.assertEqual(
            sorted(Forecast.objects.values_list("forecaster", flat=True)), ["s0", "s1", "s2"]
        )

    def test_an_unknown_column_stops_the_copy(self):
        with self.assertRaisesMessage(ValueError, "no column(s) ['nope']"):
            bulk.copy_dicts(Forecast, iter([{"nope": 1}]))
