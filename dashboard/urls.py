from __future__ import annotations

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("markets/", views.markets, name="markets"),
    path("markets/<str:ticker>/", views.market_detail, name="market"),
    path("decisions/", views.decisions, name="decisions"),
    path("decisions/<int:pk>/", views.decision_detail, name="decision"),
    path("funnel/", views.funnel, name="funnel"),
    path("positions/", views.positions, name="positions"),
    path("positions/<int:pk>/", views.position_detail, name="position"),
    path("positions/<int:pk>/flatten/", views.position_flatten_view, name="position-flatten"),
    path("orders/", views.orders, name="orders"),
    path("fills/", views.fills, name="fills"),
    path("performance/", views.performance, name="performance"),
    path("calibration/", views.calibration, name="calibration"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/risk/", views.settings_risk, name="settings-risk"),
    path("controls/pause/", views.trading_pause, name="pause"),
    path("controls/resume/", views.trading_resume, name="resume"),
    path("controls/halt/", views.trading_halt, name="halt"),
    path("controls/arm/", views.live_arm, name="arm"),
    path("controls/disarm/", views.live_disarm, name="disarm"),
]
