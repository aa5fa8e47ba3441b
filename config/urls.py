from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from config.security import DeskAdminSite, DeskLoginView
from trading.health import HealthDetailView, HealthPublicView


def health_live(request: HttpRequest) -> HttpResponse:
    """Liveness for the proxy and the container: no I/O, always 200 while the process serves.

    Normally answered earlier by ``trading.health.LivenessMiddleware``; kept for ``reverse()``.
    """
    return HttpResponse("ok\n", content_type="text/plain")


# django-otp's documented way to guard the admin: the default site takes the OTP-aware class
# (it asks for a token and refuses unverified staff only when OTP_REQUIRED is on).
admin.site.__class__ = DeskAdminSite
admin.site.site_header = "Kalshi trading desk — back office"
admin.site.site_title = "Kalshi desk admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before the stock auth URLs so this login (throttled; TOTP when OTP_REQUIRED) wins.
    path("accounts/login/", DeskLoginView.as_view(), name="login"),
    # The stock auth pages; the password reset ones only when mail is configured.
    path("accounts/", include("config.passwords")),
    path("health/", HealthPublicView.as_view(), name="health"),
    path("health/detail/", HealthDetailView.as_view(), name="health-detail"),
    path("health/live/", health_live, name="health-live"),
    path("", include("dashboard.urls")),
]
