"""Change risk limits from the command line, audited like the admin and the dashboard."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from trading.audit import risk_settings_update
from trading.models import RiskSettings


class Command(BaseCommand):
    help = "Set risk limits: manage.py set_risk NAME=VALUE [NAME=VALUE ...] (audited)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("pairs", nargs="+", metavar="NAME=VALUE")

    def handle(self, *args, pairs: list[str], **options) -> str:
        changes = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or not name:
                raise CommandError(f"{pair!r}: expected NAME=VALUE")
            changes[name.strip()] = value.strip()
        try:
            audit = risk_settings_update(
                settings_obj=RiskSettings.load(), changes=changes, user=None, via="cli"
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if not audit:
            return "Nothing changed."
        return "\n".join(f"{a.field}: {a.old_value} → {a.new_value}" for a in audit)
