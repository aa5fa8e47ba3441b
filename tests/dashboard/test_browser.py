"""The dashboard in a real browser (Debian's Chromium driven by Playwright), on demo data.

An operator logs in, opens every page, uses the filters, changes a risk setting, halts and
resumes trading, pauses, tries to arm live trading, and flattens a position. Any console
error or failed request fails the test. A screenshot of each page is saved under
``test-artifacts/screenshots/``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and the ``playwright`` package;
Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache

from dashboard.cache import forget_generation
from tests.dashboard.world import PASSWORD, World, make_operator, replay_world

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"
    ),
    pytest.mark.skipif(sync_playwright is None, reason="needs the playwright package"),
]


class Browser:
    """One page in Chromium that records console errors and failed requests."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: self.problems.append(f"failed: {req.url}"))
        page.on("dialog", lambda dialog: dialog.accept())
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location})")

    def open(self, path: str, shot: str | None = None) -> Page:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        if shot:
            self.shot(shot)
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def submit(self, button: str) -> None:
        with self.page.expect_navigation():
            self.page.click(button)


@pytest.mark.django_db(transaction=True)
def test_an_operator_works_the_dashboard_in_chromium(live_server, settings, monkeypatch):
    settings.TRADING_MODE = "replay"
    # Playwright's sync API runs an event loop in this thread; the few ORM reads the test
    # itself makes happen between browser steps, never concurrently with them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    cache.clear()  # a shared cache (Redis) may hold parts rendered by earlier tests
    forget_generation()  # and this process's recent pages
    replay_world(cycles=20)
    make_operator("desk")
    # More of every kind of row beside the engine's own, in the same books: scored
    # forecasts, closed positions, settlements, orders of unknown outcome...
    from trading.models import TradingState

    World(mode="replay", now=TradingState.load().replay_clock - timedelta(days=1)).grow(25)

    from markets.models import Market
    from trading.models import Decision, Position, RiskSettings, TradingStateChange

    traded = Decision.objects.filter(reason="traded").order_by("pk").first()
    assert traded is not None, "the replay traded nothing"
    market = traded.market.ticker
    open_position = Position.objects.open().select_related("market").first()
    if open_position is not None:
        # position_flatten sells into the market row's bid; recorded rows may have none.
        Market.objects.filter(pk=open_position.market_id).update(
            yes_bid="0.5000", yes_ask="0.5200", no_bid="0.4800", no_ask="0.5000"
        )
    assert Market.objects.exists()

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1366, "height": 900})
        b = Browser(context.new_page(), live_server.url)
        page = b.page

        # Anonymous: the login page, nothing else.
        b.open("/", "login")
        assert "/accounts/login/" in page.url
        page.fill("#id_username", "desk")
        page.fill("#id_password", PASSWORD)
        b.submit("form[action*=login] button[type=submit]")
        expect(page.locator("h1")).to_have_text("Overview")

        # Every page, with its charts drawn.
        b.open("/", "overview")
        expect(page.locator("#equity .uplot")).to_have_count(1)
        b.open("/markets/", "markets")
        b.open(f"/markets/{market}/", "market-detail")
        expect(page.locator("#price-history .uplot canvas")).to_have_count(1)
        b.open(f"/decisions/{traded.pk}/", "decision-detail")
        expect(page.locator(".reason-banner")).to_contain_text("Traded")
        expect(page.get_by_role("heading", name="Risk checks")).to_be_visible()
        b.open("/decisions/", "decisions")
        b.open("/funnel/", "funnel")
        b.open("/positions/", "positions")
        b.open("/orders/", "orders")
        b.open("/fills/", "fills")
        b.open("/performance/", "performance")
        expect(page.locator("#drawdown .uplot")).to_have_count(1)
        b.open("/calibration/", "calibration")
        expect(page.locator("#reliability .uplot")).to_have_count(1)
        expect(page.locator("#brier .uplot")).to_have_count(1)
        b.open("/settings/", "settings")

        # Filters.
        b.open("/markets/")
        page.fill("#id_q", market)
        page.select_option("#id_status", "")
        b.submit("form.filters button[type=submit]")
        assert re.search(r"[?&]q=", page.url)
        expect(page.locator("table tbody tr")).to_have_count(1)
        b.shot("markets-filtered")

        b.open("/decisions/")
        page.select_option("#id_reason", "traded")
        b.submit("form.filters button[type=submit]")
        assert "reason=traded" in page.url
        assert page.locator("tbody .badge", has_text="Traded").count() > 0
        assert page.locator("tbody .badge", has_text="Edge after fees too small").count() == 0
        b.shot("decisions-filtered")

        b.open("/orders/")
        page.select_option("#id_status", "filled")
        b.submit("form.filters button[type=submit]")
        assert "status=filled" in page.url
        b.open("/positions/")
        page.select_option("#id_status", "open")
        b.submit("form.filters button[type=submit]")
        assert "status=open" in page.url
        b.open("/funnel/")
        page.click("table a >> nth=0")  # a reason drills down into its decisions
        page.wait_for_load_state()
        assert "/decisions/?reason=" in page.url

        # A risk setting: saved and audited; an invalid one is refused with its reason.
        b.open("/settings/")
        page.fill("#id_max_open_positions", "12")
        b.submit("#save-risk")
        expect(page.locator("ul.messages")).to_contain_text("Risk settings saved (1 changed)")
        expect(page.locator("table", has_text="Max open positions")).to_contain_text("12")
        page.fill("#id_edge_high", "0.5")
        b.submit("#save-risk")
        expect(page.locator("ul.messages")).to_contain_text("were not saved")
        b.shot("settings-invalid")

        # Halt with a reason, then resume; pause, then resume.
        b.open("/settings/")
        page.fill("#id_reason", "operator check from the browser")
        b.submit("#halt")
        expect(page.locator("header .badge.state-halted")).to_have_text("Halted")
        b.open("/", "overview-halted")
        expect(page.locator(".alert.bad", has_text="Trading halted")).to_contain_text(
            "operator check from the browser"
        )
        b.open("/settings/")
        b.submit("#resume")
        expect(page.locator("header .badge.state-active")).to_have_text("Active")
        b.submit("#pause")
        expect(page.locator("header .badge.state-reduce_only")).to_have_text("Reduce-only")
        b.submit("#resume")
        expect(page.locator("ul.messages")).to_contain_text("Trading resumed")

        # Arming needs the typed confirmation (and the password typed again).
        page.fill("#id_confirmation", "yes please")
        page.fill("#id_arm_password", PASSWORD)
        b.submit("#arm")
        expect(page.locator("ul.messages li.error")).to_contain_text("exactly")
        b.shot("settings")

        # Flatten one position from its page (the confirm dialog is accepted).
        if open_position is not None:
            b.open("/positions/?status=open")
            page.click(f"a[href='/positions/{open_position.pk}/']:has-text('Close')")
            page.wait_for_load_state()
            b.shot("position-detail")
            b.submit("#flatten")
            expect(page.locator("ul.messages")).to_contain_text("Exit order queued")
            b.shot("position-flattened")

        context.close()
        chromium.close()

    assert b.problems == []
    limits = RiskSettings.load()
    assert limits.max_open_positions == 12
    assert limits.edge_high < limits.edge_low
    by_desk = TradingStateChange.objects.filter(changed_by__username="desk")
    assert list(by_desk.order_by("id").values_list("new_state", flat=True)) == [
        "halted",
        "active",
        "reduce_only",
        "active",
    ]
    assert not RiskSettings.objects.filter(pk=1, edge_high="0.5").exists()
