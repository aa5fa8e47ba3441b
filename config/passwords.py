"""Password reset by mail: only when mail is configured, and under the login lockout.

``PASSWORD_RESET_ENABLED`` (config/settings.py) is on when EMAIL_HOST is set or EMAIL_BACKEND
names a backend that sends. Off, every reset page answers 404 and nothing tries to send a mail
(an administrator sets a new password with ``manage.py changepassword``). On, each reset request
counts as a failed login for the address typed and the client (django-axes): past
AXES_FAILURE_LIMIT within AXES_COOLOFF_MINUTES the form answers with the lockout (429), like the
login (the request that reaches the limit sends nothing), and a client locked out of the
login cannot ask for resets either.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django.conf import settings
from django.contrib.auth import views
from django.contrib.auth.signals import user_login_failed
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path


class _WhenMailIsConfigured:
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.PASSWORD_RESET_ENABLED:
            raise Http404("Password reset is off: no mail is configured.")
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class ThrottledPasswordResetView(_WhenMailIsConfigured, views.PasswordResetView):
    def form_valid(self, form):
        request = self.request
        credentials = {"username": form.cleaned_data["email"]}
        if not AxesProxyHandler.is_allowed(request, credentials):
            return get_lockout_response(request, credentials=credentials)
        # Counted like a failed login (the same lockout): resets cannot flood a mailbox. The
        # request that reaches the limit sends nothing.
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        if getattr(request, "axes_locked_out", False):
            return get_lockout_response(request, credentials=credentials)
        return super().form_valid(form)


class PasswordResetDoneView(_WhenMailIsConfigured, views.PasswordResetDoneView):
    pass


class PasswordResetConfirmView(_WhenMailIsConfigured, views.PasswordResetConfirmView):
    pass


class PasswordResetCompleteView(_WhenMailIsConfigured, views.PasswordResetCompleteView):
    pass


# The stock django.contrib.auth.urls, with the reset pages above (login is config.urls' own).
urlpatterns = [
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password_change/", views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("password_reset/", ThrottledPasswordResetView.as_view(), name="password_reset"),
    path("password_reset/done/", PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "reset/<uidb64>/<token>/",
        PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("reset/done/", PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]


def context(request: HttpRequest) -> dict[str, bool]:
    """Template context: whether the login page offers the reset link."""
    return {"password_reset_enabled": settings.PASSWORD_RESET_ENABLED}
