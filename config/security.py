"""Login hardening: the client address behind a proxy, login throttling, optional two-factor.

- ``client_ip``: the address django-axes locks out. X-Forwarded-For is believed only when the
  TCP peer is one of ``TRUSTED_PROXIES``; a client talking to the app server directly cannot
  pick its own address by sending the header.
- ``LoginThrottleBackend``: django-axes' lockout check, first in AUTHENTICATION_BACKENDS.
- ``DeskLoginView``, ``DeskAdminSite`` and ``OTPRequiredMiddleware``: with ``OTP_REQUIRED`` the
  dashboard login and the admin login ask for a TOTP token and only verified sessions get in.
  Every switch is read per request, so tests can turn two-factor on with ``override_settings``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import quote

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import logout
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.forms import OTPAuthenticationForm

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- Client address ---------------------------------------------------------------------------


def _parse_ip(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address: IPAddress, proxies: list[str]) -> bool:
    for entry in proxies:
        if entry == "*":
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: the TCP peer, or (only when the peer is a trusted proxy) the
    right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    peer = _parse_ip(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return None
    proxies = list(getattr(settings, "TRUSTED_PROXIES", []))
    if not proxies or not _trusted(peer, proxies):
        return str(peer)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for hop in reversed([part for part in forwarded.split(",") if part.strip()]):
        address = _parse_ip(hop)
        if address is None:
            break  # garbage in the chain: stop believing it
        if not _trusted(address, proxies):
            return str(address)
    return str(peer)


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check. Web logins always carry the request; a call without one
    (a shell, ``Client.login`` in tests) has no client address to throttle and is let through
    to the next backend, which checks the password as usual."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


# --- Two-factor -------------------------------------------------------------------------------


class _SingleDeviceMixin:
    """Use the user's only device when none was picked, so a TOTP user types just the code."""

    def _chosen_device(self, user):
        device = super()._chosen_device(user)
        if device is None and not self.cleaned_data.get("otp_device"):
            devices = list(devices_for_user(user, confirmed=True))
            if len(devices) == 1:
                device = devices[0]
        return device


class DeskOTPAuthenticationForm(_SingleDeviceMixin, OTPAuthenticationForm):
    pass


class DeskOTPAdminAuthenticationForm(_SingleDeviceMixin, OTPAdminAuthenticationForm):
    pass


class DeskLoginView(LoginView):
    """The dashboard login: password, plus a TOTP token when OTP_REQUIRED."""

    def get_form_class(self):
        if settings.OTP_REQUIRED:
            return DeskOTPAuthenticationForm
        return AuthenticationForm


class DeskAdminSite(AdminSite):
    """The admin site; with OTP_REQUIRED it behaves as django-otp's ``OTPAdminSite``: its login
    asks for a token and an unverified staff user is treated as not staff."""

    @property
    def login_form(self):
        return DeskOTPAdminAuthenticationForm if settings.OTP_REQUIRED else AdminAuthenticationForm

    @property
    def login_template(self):
        return "otp/admin111/login.html" if settings.OTP_REQUIRED else None

    def has_permission(self, request: HttpRequest) -> bool:
        allowed = super().has_permission(request)
        if allowed and settings.OTP_REQUIRED:
            return bool(getattr(request.user, "is_verified", lambda: False)())
        return allowed


# Paths an unverified session may still reach: the logins (to verify), logout, static files,
# the health endpoints (they do their own access control) and the admin (DeskAdminSite sends
# an unverified user to its own OTP login).
_OTP_EXEMPT_PREFIXES = ("/accounts/login/", "/accounts/logout/", "/static/", "/health/", "/admin/")


class OTPRequiredMiddleware:
    """With OTP_REQUIRED, a logged-in session that was not verified by a device (one from before
    two-factor was switched on) is logged out and sent to the login page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.OTP_REQUIRED and not request.path.startswith(_OTP_EXEMPT_PREFIXES):
            user = request.user
            if user.is_authenticated and not user.is_verified():
                logout(request)
                return HttpResponseRedirect(
                    f"{settings.LOGIN_URL}?next={quote(request.get_full_path())}"
                )
        return self.get_response(request)
