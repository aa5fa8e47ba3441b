"""Create the first staff superuser with a generated password, printed once."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser with a generated password (printed once); no-op if it exists."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")

    def handle(self, *args, username: str, email: str, **options) -> str:
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            return (
                f"User {username!r} already exists; its password is unchanged "
                f"(reset it with: manage.py changepassword {username})."
            )
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        return (
            f"Created superuser {username!r} with password: {password}\n"
            "This password is shown only once; change it with manage.py changepassword."
        )
