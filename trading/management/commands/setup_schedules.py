"""Sync the django-q2 schedules with trading/schedules.py (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from trading.schedules import PREFIX, SCHEDULES


class Command(BaseCommand):
    help = "Create or update the declared schedules and delete stale ones with our prefix."

    def handle(self, *args, **options) -> str:
        created = updated = 0
        names = [entry["name"] for entry in SCHEDULES]
        with transaction.atomic():
            for entry in SCHEDULES:
                defaults = {k: v for k, v in entry.items() if k != "name"}
                defaults.setdefault("repeats", -1)
                existing = Schedule.objects.filter(name=entry["name"]).order_by("pk")
                if existing.count() > 1:  # left over from an older deploy: keep one
                    existing.exclude(pk=existing.first().pk).delete()
                row = existing.first()
                if row is None:
                    Schedule.objects.create(name=entry["name"], next_run=timezone.now(), **defaults)
                    created += 1
                elif any(getattr(row, k) != v for k, v in defaults.items()):
                    for k, v in defaults.items():
                        setattr(row, k, v)
                    row.save()
                    updated += 1
            deleted, _ = (
                Schedule.objects.filter(name__startswith=PREFIX).exclude(name__in=names).delete()
            )
        return f"Schedules: {created} created, {updated} updated, {deleted} deleted."
