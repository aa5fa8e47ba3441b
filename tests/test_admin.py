"""The admin back office: every page opens for staff, exchange and ledger rows are read-only,
and the two control rows change only through the audited services in ``trading.audit``.

The page walk goes over ``admin.site._registry``, so a model registered later is covered
without touching this file (and a new markets/trading model without a row in the world fails
``test_the_world_has_a_row_of_every_model_of_ours`` until a builder is added here).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Model
from django.http import HttpRequest
from django.test import RequestFactory, TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import OrmQ, Schedule, Task

from markets.models import (
    Event,
    Market,
    MarketSnapshot,
    Series,
    SimAccount,
    SimFill,
    SimOrder,
    SimPosition,
    SimSettlement,
)
from trading.admin import RiskSettingsAdmin, SingletonAdmin
from trading.audit import risk_settings_update, trading_state_set
from trading.models import (
    AccountSnapshot,
    BacktestRun,
    DailyCost,
    Decision,
    Fill,
    Forecast,
    JobLease,
    JobRun,
    LLMCall,
    Order,
    Position,
    RiskSettings,
    RiskSettingsChange,
    Settlement,
    TradingState,
    TradingStateChange,
)
from trading.reasons import Reason

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# Rows from the exchange or from our own ledger and audit trail: never edited in the admin.
READ_ONLY_MODELS: tuple[type[Model], ...] = (
    Series,
    Event,
    Market,
    MarketSnapshot,
    Order,
    Fill,
    Position,
    Settlement,
    Decision,
    Forecast,
    LLMCall,
    JobRun,
    JobLease,
    DailyCost,
    AccountSnapshot,
    RiskSettingsChange,
    TradingStateChange,
)
# Audit and ledger rows that not even a superuser may delete.
NEVER_DELETED: tuple[type[Model], ...] = (
    Order,
    Fill,
    Settlement,
    Decision,
    Position,
    RiskSettingsChange,
    TradingStateChange,
    JobLease,
)


# --- Builders ---------------------------------------------------------------------------------


def make_market(ticker: str = "KXHIGHNY-25JUN01-T80", **fields: Any) -> Market:
    series, _ = Series.objects.get_or_create(
        ticker="KXHIGHNY", defaults={"title": "NYC high temperature", "category": "Climate"}
    )
    event, _ = Event.objects.get_or_create(
        event_ticker="KXHIGHNY-25JUN01",
        defaults={"series": series, "title": "NYC high on Jun 1", "strike_date": NOW},
    )
    values: dict[str, Any] = {
        "event": event,
        "title": "Will the high be above 80°?",
        "category": "Climate",
        "status": Market.Status.ACTIVE,
        "close_time": NOW + timedelta(hours=6),
        "yes_bid": Decimal("0.5500"),
        "yes_ask": Decimal("0.5700"),
        "last_price": Decimal("0.5600"),
        "volume": Decimal("1500.00"),
        "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
    }
    values.update(fields)
    return Market.objects.create(ticker=ticker, **values)


def make_trade(market: Market) -> tuple[Decision, Order, Fill, Position]:
    """A forecast, a decision, its filled order, the fill and the open position."""
    ex_order = f"ex-order-{market.ticker}"
    run = JobRun.objects.create(
        job="trading_cycle",
        status=JobRun.Status.OK,
        started_at=NOW,
        heartbeat_at=NOW,
        finished_at=NOW + timedelta(seconds=3),
        summary="1 order",
    )
    call = LLMCall.objects.create(
        market=market,
        provider="fake",
        model="fake-1",
        prompt_version="v1",
        prompt="Forecast this market.",
        response='{"probability": 0.62}',
        input_tokens=900,
        output_tokens=120,
        cost=Decimal("0.003412"),
    )
    forecast = Forecast.objects.create(
        market=market,
        forecaster="llm",
        model="fake-1",
        probability=Decimal("0.62"),
        confidence=Decimal("0.70"),
        market_price=Decimal("0.5600"),
        llm_call=call,
    )
    decision = Decision.objects.create(
        run=run,
        market=market,
        forecast=forecast,
        reason=Reason.TRADED,
        side="yes",
        action="buy",
        price=Decimal("0.5700"),
        count=Decimal("10"),
        edge=Decimal("0.0412"),
    )
    order = Order.objects.create(
        decision=decision,
        market=market,
        client_order_id=f"desk-{decision.pk}",
        exchange_order_id=ex_order,
        side="yes",
        action="buy",
        yes_price=Decimal("0.5700"),
        count=Decimal("10"),
        filled_count=Decimal("10"),
        fees_paid=Decimal("0.1750"),
        status=Order.Status.FILLED,
    )
    fill = Fill.objects.create(
        fill_id=f"ex-fill-{market.ticker}",
        order=order,
        exchange_order_id=ex_order,
        market=market,
        side="yes",
        action="buy",
        count=Decimal("10"),
        yes_price=Decimal("0.5700"),
        fee=Decimal("0.1750"),
        executed_at=NOW,
    )
    position = Position.objects.create(
        market=market,
        side="yes",
        count=Decimal("10"),
        cost_basis=Decimal("5.70"),
        fees_paid=Decimal("0.1750"),
    )
    return decision, order, fill, position


def make_world() -> Market:
    """At least one row of every model the admin shows (ours, auth's and django-q's).

    Returns the open market that the trade was made in.
    """
    market = make_market()
    settled = make_market(
        "KXHIGHNY-25JUN01-T70",
        status=Market.Status.FINALIZED,
        result=Market.Result.YES,
        settlement_value=Decimal("1"),
        settled_time=NOW,
    )
    MarketSnapshot.objects.create(
        market=market, ts=NOW, yes_bid=Decimal("0.5500"), yes_ask=Decimal("0.5700")
    )
    make_trade(market)
    closed = Position.objects.create(
        market=settled,
        side="yes",
        status=Position.Status.CLOSED,
        count=Decimal("0"),
        realized_pnl=Decimal("4.00"),
        closed_at=NOW,
    )
    Settlement.objects.create(
        market=settled,
        position=closed,
        result=Market.Result.YES,
        yes_count=Decimal("10"),
        cost_basis=Decimal("6.00"),
        payout=Decimal("10.00"),
        realized_pnl=Decimal("4.00"),
        settled_at=NOW,
    )
    AccountSnapshot.objects.create(
        ts=NOW, cash=Decimal("1234.50"), equity=Decimal("1240.20"), open_positions=1
    )
    JobLease.objects.create(name="trading_cycle", owner="worker-1", token=7, acquired_at=NOW)
    DailyCost.objects.create(date=NOW.date(), llm_cost=Decimal("0.003412"), llm_calls=1)
    RiskSettings.load()
    TradingState.load()
    RiskSettingsChange.objects.create(field="max_open_positions", old_value="10", new_value="15")
    TradingStateChange.objects.create(old_state="active", new_state="halted", reason="drill")
    Group.objects.create(name="operators")
    Schedule.objects.create(name="desk:cycle", func="math.floor", schedule_type=Schedule.MINUTES)
    for success in (True, False):
        Task.objects.create(
            id=("a" if success else "b") * 32,
            name=f"task-{success}",
            func="math.floor",
            started=NOW,
            stopped=NOW,
            success=success,
        )
    OrmQ.objects.create(key="kalshi-desk", payload="not-a-package")
    account = SimAccount.objects.create(
        name="paper", cash=Decimal("990"), starting_cash=Decimal("1000")
    )
    sim_order = SimOrder.objects.create(
        account=account,
        order_id="SIM-1",
        client_order_id="kd-paper-1",
        ticker=market.ticker,
        side="yes",
        action="buy",
        yes_price=Decimal("0.5700"),
        count=Decimal("10"),
        filled_count=Decimal("10"),
        status="executed",
        created_time=NOW,
    )
    SimFill.objects.create(
        account=account,
        order=sim_order,
        fill_id="SIM-1-F1",
        ticker=market.ticker,
        side="yes",
        action="buy",
        count=Decimal("10"),
        yes_price=Decimal("0.5700"),
        fee=Decimal("0.18"),
        executed_at=NOW,
    )
    SimPosition.objects.create(
        account=account, ticker=market.ticker, position=Decimal("10"), cost=Decimal("5.70")
    )
    SimSettlement.objects.create(
        account=account,
        ticker=settled.ticker,
        result="yes",
        yes_count=Decimal("10"),
        revenue=Decimal("10"),
        settled_at=NOW,
    )
    BacktestRun.objects.create(
        forecaster="baseline", report={"trades": 3, "pnl_after_fees": "1.250000"}
    )
    return market


def _admin_url(model: type[Model], page: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{page}", args=args)


class AdminTestCase(TestCase):
    superuser: User
    market: Market

    @classmethod
    def setUpTestData(cls) -> None:
        cls.superuser = User.objects.create_superuser("boss", "boss@example.com", None)
        cls.market = make_world()

    def setUp(self) -> None:
        self.client.force_login(self.superuser)

    def _request(self) -> HttpRequest:
        request = RequestFactory().get("/admin/")
        request.user = self.superuser
        return request

    def _admin_pages(self) -> list[tuple[str, str, admin.ModelAdmin[Any]]]:
        """(label, url, admin) for every changelist, allowed add page and a change page."""
        request = self._request()
        pages: list[tuple[str, str, admin.ModelAdmin[Any]]] = [
            ("admin index", reverse("admin:index"), admin.ModelAdmin(User, admin.site))
        ]
        for model, model_admin in admin.site._registry.items():
            label = model._meta.label
            pages.append((f"{label} changelist", _admin_url(model, "changelist"), model_admin))
            if model_admin.has_add_permission(request):
                pages.append((f"{label} add", _admin_url(model, "add"), model_admin))
            obj = model_admin.get_queryset(request).first()
            if obj is not None:
                url = _admin_url(model, "change", quote(obj.pk))
                pages.append((f"{label} change", url, model_admin))
        return pages


class AdminPagesTests(AdminTestCase):
    def test_the_world_has_a_row_of_every_model_of_ours(self) -> None:
        request = self._request()
        for model, model_admin in admin.site._registry.items():
            if model._meta.app_label in {"markets", "trading"}:
                with self.subTest(model=model._meta.label):
                    self.assertTrue(model_admin.get_queryset(request).exists())

    def test_every_admin_page_opens_for_a_superuser(self) -> None:
        pages = self._admin_pages()
        self.assertGreater(len(pages), 2 * len(READ_ONLY_MODELS))
        for label, url, model_admin in pages:
            with self.subTest(page=label):
                response = self.client.get(url)
                if label.endswith("changelist") and isinstance(model_admin, SingletonAdmin):
                    self.assertRedirects(response, _admin_url(model_admin.model, "change", 1))
                else:
                    self.assertEqual(response.status_code, 200)

    def test_every_admin_page_sends_anonymous_users_to_the_login(self) -> None:
        pages = self._admin_pages()
        self.client.logout()
        login = reverse("admin:login")
        for label, url, _model_admin in pages:
            with self.subTest(page=label):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 302)
                self.assertTrue(response["Location"].startswith(f"{login}?next="))

    def test_list_pages_of_ours_do_not_run_a_query_per_row(self) -> None:
        def queries_per_list() -> dict[str, int]:
            counts = {}
            for model, model_admin in admin.site._registry.items():
                if model._meta.app_label not in {"markets", "trading"}:
                    continue
                if isinstance(model_admin, SingletonAdmin):
                    continue
                with CaptureQueriesContext(connection) as queries:
                    self.assertEqual(
                        self.client.get(_admin_url(model, "changelist")).status_code, 200
                    )
                counts[model._meta.label] = len(queries)
            return counts

        before = queries_per_list()
        more = make_market("KXHIGHNY-25JUN01-T90")
        make_trade(more)
        MarketSnapshot.objects.create(market=more, ts=NOW, yes_bid=Decimal("0.1000"))
        RiskSettingsChange.objects.create(changed_by=self.superuser, field="edge_low")
        TradingStateChange.objects.create(
            changed_by=self.superuser, old_state="halted", new_state="active"
        )
        self.assertEqual(queries_per_list(), before)

    def test_prices_and_money_are_formatted_in_the_lists(self) -> None:
        market_list = self.client.get(_admin_url(Market, "changelist")).content.decode()
        self.assertIn("0.5500", market_list)
        self.assertIn("1,500", market_list)  # volume, without trailing zeros
        equity = self.client.get(_admin_url(AccountSnapshot, "changelist")).content.decode()
        self.assertIn("$1,234.50", equity)
        self.assertIn("$1,240.20", equity)
        calls = self.client.get(_admin_url(LLMCall, "changelist")).content.decode()
        self.assertIn("$0.0034", calls)
        decisions = self.client.get(_admin_url(Decision, "changelist")).content.decode()
        self.assertIn("+0.0412", decisions)

    def test_the_market_page_links_to_its_snapshots(self) -> None:
        market = self.market
        response = self.client.get(_admin_url(Market, "change", market.pk))
        self.assertContains(
            response,
            f"{_admin_url(MarketSnapshot, 'changelist')}?market__id__exact={market.pk}",
        )
        self.assertContains(response, "1 snapshot<")
        # ...and the link is a filter the changelist accepts.
        filtered = self.client.get(
            _admin_url(MarketSnapshot, "changelist"), {"market__id__exact": market.pk}
        )
        self.assertEqual(filtered.status_code, 200)
        self.assertEqual(filtered.context["cl"].result_count, 1)


class ReadOnlyAdminTests(AdminTestCase):
    def test_exchange_and_ledger_rows_refuse_add_and_change(self) -> None:
        for model in READ_ONLY_MODELS:
            with self.subTest(model=model._meta.label):
                obj = model._default_manager.first()
                assert obj is not None
                before = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
                change_url = _admin_url(model, "change", obj.pk)

                page = self.client.get(change_url)
                self.assertEqual(page.status_code, 200)
                self.assertFalse(page.context["has_change_permission"])
                self.assertNotContains(page, 'name="_save"')

                posted = self.client.post(change_url, {"_save": "Save"})
                self.assertEqual(posted.status_code, 403)
                self.assertEqual(self.client.get(_admin_url(model, "add")).status_code, 403)
                obj.refresh_from_db()
                after = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
                self.assertEqual(after, before)

    def test_ledger_and_audit_rows_cannot_be_deleted_even_by_a_superuser(self) -> None:
        for model in NEVER_DELETED:
            with self.subTest(model=model._meta.label):
                obj = model._default_manager.first()
                assert obj is not None
                response = self.client.post(_admin_url(model, "delete", obj.pk), {"post": "yes"})
                self.assertEqual(response.status_code, 403)
                self.assertTrue(model._default_manager.filter(pk=obj.pk).exists())

    def test_a_superuser_may_prune_snapshots_but_a_staff_viewer_may_not(self) -> None:
        snapshot = MarketSnapshot.objects.get()
        url = _admin_url(MarketSnapshot, "delete", snapshot.pk)

        viewer = User.objects.create_user("viewer", is_staff=True)
        viewer.user_permissions.add(
            Permission.objects.get(codename="view_marketsnapshot"),
            Permission.objects.get(codename="delete_marketsnapshot"),
        )
        self.client.force_login(viewer)
        self.assertEqual(self.client.post(url, {"post": "yes"}).status_code, 403)

        self.client.force_login(self.superuser)
        self.client.post(url, {"post": "yes"})
        self.assertFalse(MarketSnapshot.objects.exists())

    def test_staff_with_view_permission_can_open_but_not_change_a_market(self) -> None:
        viewer = User.objects.create_user("viewer", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_market"))
        self.client.force_login(viewer)
        market = self.market
        url = _admin_url(Market, "change", market.pk)
        self.assertEqual(self.client.get(url).status_code, 200)
        self.assertEqual(self.client.post(url, {"title": "edited"}).status_code, 403)
        market.refresh_from_db()
        self.assertNotEqual(market.title, "edited")
        # Without the permission the page is closed.
        self.assertEqual(self.client.get(_admin_url(Order, "changelist")).status_code, 403)


def _form_data(response: Any) -> dict[str, str]:
    """The change form's current values, as a browser would post them back."""
    form = response.context["adminform"].form
    data = {"_save": "Save"}
    for name in form.fields:
        value = form.initial.get(name)
        data[name] = "" if value is None else str(value)
    return data


class RiskSettingsAdminTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.url = _admin_url(RiskSettings, "change", RiskSettings.SINGLETON_PK)

    def _post(self, **changes: str) -> Any:
        data = _form_data(self.client.get(self.url))
        data.update(changes)
        return self.client.post(self.url, data)

    def test_the_changelist_opens_the_single_row_creating_it_when_missing(self) -> None:
        RiskSettings.objects.all().delete()
        response = self.client.get(_admin_url(RiskSettings, "changelist"))
        self.assertRedirects(response, self.url)
        self.assertEqual(RiskSettings.objects.get().max_position_pct, Decimal("0.05"))

    def test_there_is_nothing_to_add_or_delete(self) -> None:
        self.assertEqual(self.client.get(_admin_url(RiskSettings, "add")).status_code, 403)
        delete = _admin_url(RiskSettings, "delete", RiskSettings.SINGLETON_PK)
        self.assertEqual(self.client.post(delete, {"post": "yes"}).status_code, 403)
        self.assertTrue(RiskSettings.objects.exists())

    def test_every_audited_field_is_on_the_form(self) -> None:
        shown = {
            name
            for _title, options in RiskSettingsAdmin.fieldsets or ()
            for name in options["fields"]
        }
        self.assertLessEqual(set(RiskSettings.AUDITED_FIELDS), shown)
        form = self.client.get(self.url).context["adminform"].form
        self.assertEqual(set(form.fields), set(RiskSettings.AUDITED_FIELDS))

    def test_a_valid_change_is_saved_and_audited_field_by_field(self) -> None:
        RiskSettingsChange.objects.all().delete()
        response = self._post(max_position_pct="0.07", edge_low="0.15", max_open_positions="15")
        self.assertEqual(response.status_code, 302)

        row = RiskSettings.objects.get()
        self.assertEqual(row.max_position_pct, Decimal("0.07"))
        self.assertEqual(row.edge_low, Decimal("0.15"))
        self.assertEqual(row.updated_by, self.superuser)
        audit = {c.field: c for c in RiskSettingsChange.objects.all()}
        # max_open_positions was posted unchanged (15 is the default): no audit row for it.
        self.assertEqual(set(audit), {"max_position_pct", "edge_low"})
        change = audit["max_position_pct"]
        self.assertEqual(
            (change.changed_by, change.old_value, change.new_value, change.via),
            (self.superuser, "0.050000", "0.070000", "admin"),
        )
        self.assertEqual(
            (audit["edge_low"].old_value, audit["edge_low"].new_value), ("0.120000", "0.150000")
        )
        self.assertEqual(change.changed_at, row.updated_at)

        page = self.client.get(self.url)
        self.assertContains(page, "<td>max_position_pct</td><td>0.050000</td><td>0.070000</td>")

    def test_an_out_of_range_value_shows_an_error_and_changes_nothing(self) -> None:
        RiskSettingsChange.objects.all().delete()
        response = self._post(max_position_pct="1.5", max_open_positions="20")
        self.assertEqual(response.status_code, 200)
        self.assertIn("max_position_pct", response.context["adminform"].form.errors)
        self.assertContains(response, "less than or equal to 1")
        row = RiskSettings.objects.get()
        self.assertEqual(row.max_position_pct, Decimal("0.05"))
        self.assertEqual(row.max_open_positions, 15)
        self.assertFalse(RiskSettingsChange.objects.exists())

    def test_edge_tiers_out_of_order_show_an_error_and_change_nothing(self) -> None:
        RiskSettingsChange.objects.all().delete()
        response = self._post(edge_high="0.20")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Edge thresholds must not decrease")
        self.assertEqual(RiskSettings.objects.get().edge_high, Decimal("0.06"))
        self.assertFalse(RiskSettingsChange.objects.exists())


class TradingStateAdminTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.url = _admin_url(TradingState, "change", TradingState.SINGLETON_PK)
        TradingStateChange.objects.all().delete()

    def _post(self, **changes: str) -> Any:
        data = _form_data(self.client.get(self.url))
        data.update(changes)
        return self.client.post(self.url, data)

    def test_only_state_and_reason_are_editable(self) -> None:
        form = self.client.get(self.url).context["adminform"].form
        self.assertEqual(set(form.fields), {"state", "reason"})

    def test_halting_with_a_reason_is_saved_and_recorded(self) -> None:
        response = self._post(state="halted", reason="  exchange outage  ", live_armed="on")
        self.assertEqual(response.status_code, 302)
        row = TradingState.objects.get()
        self.assertEqual((row.state, row.reason), ("halted", "exchange outage"))
        self.assertEqual(row.changed_by, self.superuser)
        self.assertFalse(row.live_armed)  # not editable here, whatever is posted
        change = TradingStateChange.objects.get()
        self.assertEqual(
            (change.old_state, change.new_state, change.reason, change.changed_by),
            ("active", "halted", "exchange outage", self.superuser),
        )

    def test_halting_without_a_reason_shows_an_error_and_changes_nothing(self) -> None:
        response = self._post(state="halted", reason=" ")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response.context["adminform"].form.errors["reason"],
            ["Halting trading needs a reason."],
        )
        self.assertEqual(TradingState.objects.get().state, "active")
        self.assertFalse(TradingStateChange.objects.exists())


class AuditServiceTests(TestCase):
    """The services on their own, as the dashboard will call them."""

    user: User

    @classmethod
    def setUpTestData(cls) -> None:
        cls.user = User.objects.create_user("operator")

    def test_risk_settings_update_writes_one_row_per_changed_field(self) -> None:
        settings_obj = RiskSettings.load()
        rows = risk_settings_update(
            settings_obj=settings_obj,
            changes={"kelly_fraction": "0.5", "min_volume": Decimal("200"), "max_kelly": "0.30"},
            user=self.user,
            via="dashboard",
        )
        self.assertEqual(
            sorted((r.field, r.old_value, r.new_value, r.via) for r in rows),
            [
                ("kelly_fraction", "0.750000", "0.500000", "dashboard"),
                ("max_kelly", "0.250000", "0.300000", "dashboard"),
            ],
        )
        self.assertEqual(RiskSettingsChange.objects.filter(changed_by=self.user).count(), 2)
        # The caller's object now holds what is stored.
        self.assertEqual(settings_obj.kelly_fraction, Decimal("0.5"))
        self.assertEqual(settings_obj.updated_by, self.user)

    def test_risk_settings_update_with_nothing_new_writes_nothing(self) -> None:
        settings_obj = RiskSettings.load()
        before = settings_obj.updated_at
        rows = risk_settings_update(
            settings_obj=settings_obj, changes={"edge_low": "0.12"}, user=self.user, via="admin"
        )
        self.assertEqual(rows, [])
        self.assertFalse(RiskSettingsChange.objects.exists())
        self.assertEqual(RiskSettings.objects.get().updated_at, before)

    def test_risk_settings_update_refuses_invalid_values_and_writes_nothing(self) -> None:
        settings_obj = RiskSettings.load()
        bad_changes: list[dict[str, Any]] = [
            {"max_position_pct": "1.5"},
            {"edge_medium": "0.05"},  # below edge_high (0.06)
            {"max_open_positions": "many"},
            {"edge_low": "0.1234567"},  # more decimals than the field keeps
        ]
        for changes in bad_changes:
            with self.subTest(changes=changes), self.assertRaises(ValidationError):
                risk_settings_update(
                    settings_obj=settings_obj, changes=changes, user=self.user, via="admin"
                )
        row = RiskSettings.objects.get()
        self.assertEqual(
            (row.max_position_pct, row.edge_medium, row.max_open_positions, row.edge_low),
            (Decimal("0.05"), Decimal("0.08"), 15, Decimal("0.12")),
        )
        self.assertFalse(RiskSettingsChange.objects.exists())

    def test_risk_settings_update_refuses_fields_that_are_not_audited(self) -> None:
        with self.assertRaises(ValueError):
            risk_settings_update(
                settings_obj=RiskSettings.load(),
                changes={"updated_by": None},
                user=self.user,
                via="admin",
            )

    def test_risk_settings_update_applies_only_the_fields_it_is_given(self) -> None:
        # Someone else changed edge_low after this caller loaded the row: it must survive.
        stale = RiskSettings.load()
        RiskSettings.objects.filter(pk=stale.pk).update(edge_low=Decimal("0.20"))
        risk_settings_update(
            settings_obj=stale, changes={"edge_high": "0.07"}, user=self.user, via="admin"
        )
        row = RiskSettings.objects.get()
        self.assertEqual((row.edge_high, row.edge_low), (Decimal("0.07"), Decimal("0.2")))

    def test_trading_state_set_records_every_change(self) -> None:
        halted = trading_state_set(state="halted", reason="drill", user=self.user)
        self.assertEqual(
            (halted.state, halted.reason, halted.changed_by), ("halted", "drill", self.user)
        )
        trading_state_set(state="halted", reason="drill", user=self.user)  # nothing new
        trading_state_set(state="halted", reason="drill, part two", user=None)
        trading_state_set(state="reduce_only", reason="", user=self.user)
        self.assertEqual(
            list(
                TradingStateChange.objects.order_by("id").values_list(
                    "old_state", "new_state", "reason"
                )
            ),
            [
                ("active", "halted", "drill"),
                ("halted", "halted", "drill, part two"),
                ("halted", "reduce_only", ""),
            ],
        )
        self.assertEqual(TradingState.objects.get().state, "reduce_only")

    def test_trading_state_set_refuses_unknown_states(self) -> None:
        with self.assertRaises(ValidationError):
            trading_state_set(state="paused", reason="why not", user=self.user)
        self.assertEqual(TradingState.load().state, "active")
        self.assertFalse(TradingStateChange.objects.exists())

    def test_trading_state_set_never_arms_live_trading(self) -> None:
        state = trading_state_set(state="active", reason="resume", user=self.user)
        self.assertFalse(state.live_armed)
        self.assertFalse(TradingStateChange.objects.get().live_armed)
