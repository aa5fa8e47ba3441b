"""Give a user a desk role (or take it away): viewer, operator, risk-manager, live-trader."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from trading import roles as desk_roles


class Command(BaseCommand):
    help = (
        "Give USERNAME one or more roles (groups): viewer (every dashboard page, read-only), "
        "operator (halt, pause, resume, flatten, disarm), risk-manager (risk limits), "
        "live-trader (arm live trading, with the password typed again). --revoke takes them "
        "away; with no role given, prints the user's roles."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("roles", nargs="*", metavar="ROLE", help=", ".join(desk_roles.ROLES))
        parser.add_argument("--revoke", action="store_true", help="take the roles away")
        parser.add_argument(
            "--create",
            action="store_true",
            help="create the user (not staff) with a generated password, printed once",
        )

    def handle(
        self, *args, username: str, roles: list[str], revoke: bool, create: bool, **options
    ) -> str:
        unknown = [role for role in roles if role not in desk_roles.ROLES]
        if unknown:
            raise CommandError(
                f"Unknown role {', '.join(unknown)}; the roles are {', '.join(desk_roles.ROLES)}."
            )
        User = get_user_model()
        created = ""
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
            if create:
                raise CommandError(f"User {username!r} already exists; drop --create.")
        except User.DoesNotExist:
            if not create:
                raise CommandError(
                    f"No user {username!r}. Add --create to create it, or use the admin."
                ) from None
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(username=username, password=password)
            created = (
                f"Created user {username!r} with password: {password}\n"
                "This password is shown only once; change it with manage.py changepassword.\n"
            )
        if revoke:
            if not roles:
                raise CommandError("--revoke needs the role(s) to take away.")
            desk_roles.revoke(user, *roles)
        elif roles:
            desk_roles.grant(user, *roles)
        held = desk_roles.roles_of(user)
        note = " (superuser: every permission whatever the roles)" if user.is_superuser else ""
        return f"{created}{username}: {', '.join(held) if held else 'no role'}{note}"
