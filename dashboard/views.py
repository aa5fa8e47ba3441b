from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from markets.models import Market
from trading.models import Decision, Position, TradingState


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """A first overview; the full dashboard comes with its own issue."""
    context = {
        "state": TradingState.load(),
        "market_count": Market.objects.count(),
        "open_positions": Position.objects.open().count(),
        "decision_count": Decision.objects.count(),
    }
    return render(request, "dashboard/index.html", context)
