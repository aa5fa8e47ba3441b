"""The desk's roles: Django groups of permissions, made by a migration and by ``grant_role``.

==============  ==============================================================================
role            may
==============  ==============================================================================
viewer          read every dashboard page (``trading.view_dashboard``)
operator        viewer + halt, pause (reduce-only), resume, flatten, disarm (and any cancel)
                (``trading.operate_trading``)
risk-manager    viewer + change the risk limits (``trading.change_risksettings``, the model
                permission the admin uses too)
live-trader     viewer + arm live trading (``trading.arm_live_trading``), with the password
                (or the TOTP code when OTP_REQUIRED) typed again
==============  ==============================================================================

A superuser has every permission. A user in no group (staff or not) sees no dashboard page:
403. The admin keeps its own model permissions (``is_staff`` plus ``view_…``/``change_…``).
"""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

VIEW = "trading.view_dashboard"
OPERATE = "trading.operate_trading"
CHANGE_RISK = "trading.change_risksettings"
ARM = "trading.arm_live_trading"

# role name -> (group name, permissions). The migration 0011_roles holds a frozen copy.
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "viewer": ("Viewer", (VIEW,)),
    "operator": ("Operator", (VIEW, OPERATE)),
    "risk-manager": ("Risk manager", (VIEW, CHANGE_RISK, "trading.view_risksettings")),
    "live-trader": ("Live trader", (VIEW, ARM)),
}


def _permission(dotted: str) -> Permission:
    app_label, codename = dotted.split(".", 1)
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def role_group(role: str) -> Group:
    """The group of ``role``, created (or completed) when missing; a ``KeyError`` for an
    unknown role name."""
    name, perms = ROLES[role]
    group, _ = Group.objects.get_or_create(name=name)
    group.permissions.add(*(_permission(p) for p in perms))
    return group


def grant(user, *roles: str) -> None:
    """Put ``user`` in the groups of ``roles``."""
    user.groups.add(*(role_group(role) for role in roles))
    _forget(user)


def revoke(user, *roles: str) -> None:
    user.groups.remove(*(role_group(role) for role in roles))
    _forget(user)


def roles_of(user) -> list[str]:
    names = set(user.groups.values_list("name", flat=True))
    return [role for role, (group, _) in ROLES.items() if group in names]


def _forget(user) -> None:
    for attr in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(attr, None)


class RoleBackend(ModelBackend):
    """Django's ``ModelBackend`` reading a user's permissions (their own and their groups')
    in one query instead of two: every dashboard request checks one, page cache or not."""

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            perms = Permission.objects.all()
            if not user_obj.is_superuser:
                perms = perms.filter(Q(user=user_obj) | Q(group__user=user_obj))
            pairs = perms.values_list("content_type__app_label", "codename").order_by()
            user_obj._perm_cache = {f"{app}.{code}" for app, code in pairs.distinct()}
        return user_obj._perm_cache
