"""The project's WSGI app plus one trivial page behind the whole stack, for benchmarks only.

``/bench/ping/`` goes through every middleware (sessions, authentication, CSRF, 2FA, axes) and
``login_required`` like a dashboard page, and returns a few bytes without touching the data:
the fair "trivial view" to compare the dashboard's pages with. ``/health/live/`` is answered
by the first middleware and measures gunicorn alone.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import include, path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()


@login_required
def ping(request):
    return HttpResponse(b"ok\n", content_type="text/plain")


urlpatterns = [path("bench/ping/", ping), path("", include("config.urls"))]
settings.ROOT_URLCONF = __name__
