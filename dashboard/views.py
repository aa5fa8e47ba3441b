"""The operator's pages and their few POST controls (docs/ARCHITECTURE.md, Conventions).

Pages read through ``dashboard.queries`` (a fixed number of queries each), cache the heavy
parts under the generation key (``dashboard.cache``), and render; the finished page is kept
per user too (``cached_page``). The trading state is always read live, on every request: a
halt must show at once. Controls are POST-only, CSRF-protected, call exactly one service,
then redirect with a message. Every view checks a permission first (``requires``; the roles
are in ``trading.roles``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required, user_passes_test
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import match_token

from dashboard import forms, queries
from dashboard.cache import (
    CSRF_PLACEHOLDER,
    cached_html,
    page_response,
    part_key,
    reset_generation_key,
    wants_placeholder,
)
from dashboard.templatetags.dashboard_extras import duration
from dashboard.why import explain
from markets.models import Market
from trading.audit import (
    ARM_CONFIRMATION,
    live_trading_arm,
    live_trading_disarm,
    risk_settings_update,
    trading_state_set,
)
from trading.models import Decision, Position, RiskSettings, TradingState
from trading.roles import ARM, CHANGE_RISK, OPERATE, VIEW
from trading.services import halt, position_flatten


def requires(*perms: str) -> Callable:
    """Guard a view: an anonymous visitor goes to the login page; a logged-in user holding
    none of ``perms`` gets 403 (``trading.roles`` says who holds what)."""

    def allowed(user: Any) -> bool:
        if any(user.has_perm(perm) for perm in perms):
            return True
        raise PermissionDenied

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        return login_required(user_passes_test(allowed)(view))

    return decorator


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """Render a page with the live trading state and mode (the header shows both)."""
    base = {"state": context.get("state") or _state(request), "trading_mode": settings.TRADING_MODE}
    if wants_placeholder(request):  # a page for the page cache: the token goes in per response
        base["csrf_token"] = CSRF_PLACEHOLDER
    return render(request, template, {**base, **context}, status=status)


def _page_number(request: HttpRequest) -> int:
    return forms.page_number(request.GET)  # 400 for anything but a page number in range


def _state(request: HttpRequest) -> TradingState:
    """The trading state this request read live (``cached_page``), or a live read now."""
    state = getattr(request, "dashboard_state", None)
    return state if state is not None else queries.live_state()


def _now(request: HttpRequest) -> tuple[TradingState, Any]:
    state = _state(request)
    return state, queries.mode_now(settings.TRADING_MODE, state)


def cached_page(*, heartbeat: bool = False, risk: bool = False) -> Callable:
    """Serve a GET page through the page cache (``dashboard.cache.page_response``).

    The key's live part is read in one query on every request: the whole trading-state row
    (a halt shows at once), and where the page shows them the heartbeat as displayed (it ages
    by the second) and the limits row's last change (a change from the command line too).
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            state = queries.live_state(heartbeat=heartbeat, risk=risk)
            request.dashboard_state = state
            live: list[object] = [settings.TRADING_MODE]
            if state.pk is None:  # a new installation: the unsaved default row
                live.append("default")
            else:  # every column of the row
                live += [getattr(state, f.attname) for f in TradingState._meta.concrete_fields]
            if heartbeat:
                hb = queries.heartbeat(state.last_heartbeat)
                request.dashboard_heartbeat = hb
                live += [duration(hb["age"]), hb["stale"]]
            if risk:
                live.append(state.risk_updated_at)
            response = page_response(request, tuple(live), lambda: view(request, *args, **kwargs))
            # The operator's books are private and live: no browser or proxy keeps a copy.
            add_never_cache_headers(response)
            return response

        return wrapper

    return decorator


# --- Pages ----------------------------------------------------------------------------------
# Each page renders its heavy part (tables, charts) as a fragment cached under the generation
# key: between two trading cycles a page costs a cache read and the small live rest (the
# header, the trading state, the filter form, any control form).


def _query(form: forms.FilterForm) -> str:
    """The cleaned filters as a query string, for the pagination links of a cached page."""
    return urlencode(form.key())


def _raw(data: QueryDict, form_class: type[forms.FilterForm]) -> tuple[tuple[str, str], ...]:
    """The form's own parameters as given (the cache key of a page that shows the form)."""
    return tuple(sorted((k, v) for k in form_class.base_fields for v in data.getlist(k)))


def _list_page(
    request: HttpRequest,
    name: str,
    form_class: type[forms.FilterForm],
    rows: Callable[[forms.FilterForm, int], queries.Page],
    data: QueryDict | None = None,
) -> SafeString:
    """A list page's filter form, table and pagination, cached as one fragment: on a hit
    neither the form nor the query runs."""
    data = request.GET if data is None else data
    number = _page_number(request)

    def build() -> dict[str, Any]:
        form = form_class(data)
        return {"form": form, "page": rows(form, number), "query": _query(form)}

    key = part_key(name, _raw(data, form_class), number)
    return cached_html(key, f"dashboard/{name}_body.html", build)


@requires(VIEW)
@cached_page(heartbeat=True)
def index(request: HttpRequest) -> HttpResponse:
    state, now = _now(request)
    mode, today = settings.TRADING_MODE, timezone.localdate()
    body = cached_html(
        part_key("overview", mode, timezone.localdate(now), today),
        "dashboard/overview_body.html",
        lambda: {"o": queries.overview(mode, now), "ai": queries.ai_spend(today), "mode": mode},
    )
    context = {"state": state, "now": now, "body": body, "hb": request.dashboard_heartbeat}
    return _render(request, "dashboard/index.html", context)


@requires(VIEW)
@cached_page()
def markets(request: HttpRequest) -> HttpResponse:
    state, now = _now(request)
    number = _page_number(request)

    def build() -> dict[str, Any]:
        choices = queries.market_filter_choices()
        form = forms.MarketFilterForm(request.GET, categories=choices["categories"])
        page = queries.markets_page(form.filters, number, now)
        return {"form": form, "page": page, "query": _query(form), **choices}

    key = part_key("markets", _raw(request.GET, forms.MarketFilterForm), number, now.date())
    body = cached_html(key, "dashboard/markets_body.html", build)
    return _render(request, "dashboard/markets.html", {"state": state, "body": body})


@requires(VIEW)
@cached_page()
def market_detail(request: HttpRequest, ticker: str) -> HttpResponse:
    # The header needs three columns; the cached body loads the whole market on a miss.
    market = get_object_or_404(
        Market.objects.only("ticker", "title", "yes_sub_title"), ticker=ticker
    )

    def build() -> dict[str, Any]:
        full = Market.objects.select_related("event__series").get(pk=market.pk)
        return {"market": full, **queries.market_detail(full)}

    body = cached_html(part_key("market", market.pk), "dashboard/market_body.html", build)
    return _render(request, "dashboard/market_detail.html", {"market": market, "body": body})


@requires(VIEW)
@cached_page()
def decisions(request: HttpRequest) -> HttpResponse:
    data = forms.with_mode_default(request.GET)
    body = _list_page(
        request,
        "decisions",
        forms.DecisionFilterForm,
        lambda form, number: queries.decisions_page(form.filters, number),
        data,
    )
    return _render(request, "dashboard/decisions.html", {"body": body})


@requires(VIEW)
@cached_page()
def decision_detail(request: HttpRequest, pk: int) -> HttpResponse:
    # The page header needs a few columns; the body (the whole "why") is cached HTML and
    # loads the full decision, its forecast and model call only when it is rebuilt.
    header = (
        "decided_at",
        "mode",
        "strategy",
        "run_id",
        "market__ticker",
        "market__title",
        "market__yes_sub_title",
    )
    decision = get_object_or_404(Decision.objects.select_related("market").only(*header), pk=pk)

    def build() -> dict[str, Any]:
        related = ("market__event", "forecast__llm_call", "run")
        full = Decision.objects.select_related(*related).get(pk=pk)
        return {
            "d": full,
            "why": explain(full.reason, full.details),
            **queries.decision_detail(full),
        }

    body = cached_html(part_key("decision", pk), "dashboard/decision_body.html", build)
    return _render(request, "dashboard/decision_detail.html", {"d": decision, "body": body})


@requires(VIEW)
@cached_page()
def funnel(request: HttpRequest) -> HttpResponse:
    state, now = _now(request)
    data = forms.with_mode_default(request.GET)
    data.setdefault("day", timezone.localdate(now).isoformat())
    form = forms.FunnelForm(data)
    mode = form.filters.get("mode", settings.TRADING_MODE)
    day = form.filters.get("day") or timezone.localdate(now)
    body = cached_html(
        part_key("funnel", mode, day),
        "dashboard/funnel_body.html",
        lambda: {"f": queries.funnel(mode, day), "day": day, "funnel_mode": mode},
    )
    context = {"state": state, "form": form, "body": body, "day": day, "funnel_mode": mode}
    return _render(request, "dashboard/funnel.html", {**context, "today": timezone.localdate(now)})


@requires(VIEW)
@cached_page()
def positions(request: HttpRequest) -> HttpResponse:
    state, now = _now(request)
    body = _list_page(
        request,
        "positions",
        forms.PositionFilterForm,
        lambda form, number: queries.positions_page(form.filters, number, now),
        forms.with_mode_default(request.GET),
    )
    return _render(request, "dashboard/positions.html", {"state": state, "body": body})


@requires(VIEW)
@never_cache
def position_detail(request: HttpRequest, pk: int) -> HttpResponse:
    state, now = _now(request)
    position = get_object_or_404(queries.positions_with_marks(now), pk=pk)
    context = {"state": state, "p": position, **queries.position_detail(position)}
    return _render(request, "dashboard/position_detail.html", context)


@requires(VIEW)
@cached_page()
def orders(request: HttpRequest) -> HttpResponse:
    body = _list_page(
        request,
        "orders",
        forms.OrderFilterForm,
        lambda form, number: queries.orders_page(form.filters, number),
        forms.with_mode_default(request.GET),
    )
    return _render(request, "dashboard/orders.html", {"body": body})


@requires(VIEW)
@cached_page()
def fills(request: HttpRequest) -> HttpResponse:
    body = _list_page(
        request,
        "fills",
        forms.FillFilterForm,
        lambda form, number: queries.fills_page(form.filters, number),
        forms.with_mode_default(request.GET),
    )
    return _render(request, "dashboard/fills.html", {"body": body})


@requires(VIEW)
@cached_page()
def performance(request: HttpRequest) -> HttpResponse:
    mode = settings.TRADING_MODE
    body = cached_html(
        part_key("performance", mode),
        "dashboard/performance_body.html",
        lambda: {"p": queries.performance(mode), "mode": mode},
    )
    return _render(request, "dashboard/performance.html", {"body": body})


@requires(VIEW)
@cached_page()
def calibration(request: HttpRequest) -> HttpResponse:
    def build() -> dict[str, Any]:
        form = forms.CalibrationForm(request.GET, forecasters=queries.forecaster_names())
        return {"form": form, "c": queries.calibration(form.filters.get("forecaster"))}

    key = part_key("calibration", _raw(request.GET, forms.CalibrationForm))
    body = cached_html(key, "dashboard/calibration_body.html", build)
    return _render(request, "dashboard/calibration.html", {"body": body})


@requires(VIEW)
@cached_page(risk=True)
def settings_page(request: HttpRequest) -> HttpResponse:
    return _settings(request, forms.RiskSettingsForm(instance=queries.risk_settings()))


def _settings(request: HttpRequest, form: forms.RiskSettingsForm) -> HttpResponse:
    """The controls and the risk form. An unbound form is cached by the row's ``updated_at``
    (so a change made anywhere shows at once); a form with errors is rendered as it is."""
    limits = form.instance
    if form.is_bound:
        fields = render_to_string("dashboard/risk_form_fields.html", {"form": form})
    else:
        fields = cached_html(
            # An unsaved row holds the defaults (its updated_at is "now": not a key).
            part_key("risk-form", limits.updated_at.isoformat() if limits.pk else "defaults"),
            "dashboard/risk_form_fields.html",
            lambda: {"form": form},
        )
    history = cached_html(
        part_key("settings-history"), "dashboard/settings_history.html", queries.settings_history
    )
    context = {
        "fields": fields,
        "form": form,
        "confirmation": ARM_CONFIRMATION,
        "otp_required": settings.OTP_REQUIRED,
        "live_configured": settings.TRADING_MODE == "live",
        "history": history,
    }
    return _render(request, "dashboard/settings.html", context)


# --- Controls (POST only; each calls one service) -------------------------------------------


def _back(request: HttpRequest, default: str = "dashboard:settings") -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return redirect(default)


def _control(request: HttpRequest, action: Callable[[], Any], done: str) -> HttpResponseRedirect:
    """Run one service call; report its outcome as a message; redirect back."""
    try:
        action()
    except (ValidationError, ValueError) as exc:
        text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
    else:
        reset_generation_key()  # the pages show the change at once
        messages.success(request, done)
    return _back(request)


@requires(CHANGE_RISK)
@require_POST
def settings_risk(request: HttpRequest) -> HttpResponse:
    form = forms.RiskSettingsForm(request.POST, instance=RiskSettings.load())
    if not form.is_valid():
        messages.error(request, "The risk settings were not saved: see the errors below.")
        return _settings(request, form)
    try:
        changed = risk_settings_update(
            settings_obj=form.instance, changes=form.changes(), user=request.user, via="dashboard"
        )
    except ValidationError as exc:
        form.add_error(None, exc)
        return _settings(request, form)
    reset_generation_key()
    messages.success(request, f"Risk settings saved ({len(changed)} changed).")
    return redirect("dashboard:settings")


@requires(OPERATE)
@require_POST
def trading_pause(request: HttpRequest) -> HttpResponse:
    reason = request.POST.get("reason", "").strip() or "paused from the dashboard"
    return _control(
        request,
        lambda: trading_state_set(
            state=TradingState.State.REDUCE_ONLY, reason=reason, user=request.user
        ),
        "Trading paused: reduce-only (exits only, no new entries).",
    )


@requires(OPERATE)
@require_POST
def trading_resume(request: HttpRequest) -> HttpResponse:
    return _control(
        request,
        lambda: trading_state_set(state=TradingState.State.ACTIVE, reason="", user=request.user),
        "Trading resumed.",
    )


@requires(OPERATE)
@require_POST
def trading_halt(request: HttpRequest) -> HttpResponse:
    form = forms.HaltForm(request.POST)
    reason = form.reason_given()  # never refused: a halt always halts
    cancel_orders = form.fields["cancel_orders"].clean(request.POST.get("cancel_orders"))
    return _control(
        request,
        lambda: halt(reason, user=request.user, cancel_orders=cancel_orders),
        "Trading halted: no order is sent until it is resumed."
        + (" Resting orders are cancelled by the next cycle." if cancel_orders else ""),
    )


def _reauthentication_refused(request: HttpRequest) -> str | None:
    """Why the user did not prove again who they are, or None when they did: the TOTP code
    with OTP_REQUIRED, else the password. A wrong password goes through the login lockout
    (django-axes counts it; past the limit the answer is its 429)."""
    user = request.user
    if settings.OTP_REQUIRED:
        token = request.POST.get("otp_token", "").strip()
        if token and match_token(user, token) is not None:
            return None
        return "Live trading was not armed: the authenticator code is wrong or missing."
    password = request.POST.get("password", "")
    if password:
        again = authenticate(request, username=user.get_username(), password=password)
        if again is not None and again.pk == user.pk:
            return None
    return "Live trading was not armed: your password is wrong or missing."


@requires(ARM)
@require_POST
def live_arm(request: HttpRequest) -> HttpResponse:
    refused = _reauthentication_refused(request)
    if refused:
        messages.error(request, refused)
        return _back(request)
    confirmation = request.POST.get("confirmation", "")
    return _control(
        request,
        lambda: live_trading_arm(user=request.user, confirmation=confirmation),
        "Live trading armed: real orders may be sent in live mode.",
    )


@requires(OPERATE, ARM)
@require_POST
def live_disarm(request: HttpRequest) -> HttpResponse:
    return _control(
        request, lambda: live_trading_disarm(user=request.user), "Live trading disarmed."
    )


@requires(OPERATE)
@require_POST
def position_flatten_view(request: HttpRequest, pk: int) -> HttpResponse:
    position = get_object_or_404(Position.objects.select_related("market"), pk=pk)
    now = queries.mode_now(position.mode, _state(request))  # the replay clock in replay
    return _control(
        request,
        lambda: position_flatten(position=position, user=request.user, now=now),
        f"Exit order queued for {position.market.ticker}: the next cycle sends it.",
    )
