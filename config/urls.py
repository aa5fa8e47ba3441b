from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from health_check.views import HealthCheckView

from trading.health import HEALTH_CHECKS


def health_live(request: HttpRequest) -> HttpResponse:
    """Liveness for the proxy and the container: no I/O, always 200 while the process serves."""
    return HttpResponse("ok\n", content_type="text/plain")


admin.site.site_header = "Kalshi trading desk — back office"
admin.site.site_title = "Kalshi desk admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("health/", HealthCheckView.as_view(checks=HEALTH_CHECKS), name="health"),
    path("health/live/", health_live, name="health-live"),
    path("", include("dashboard.urls")),
]
