from __future__ import annotations

from django.core.management import call_command
from django.test import TestCase
from django_q.models import Schedule

from trading.schedules import PREFIX, SCHEDULES


class SetupSchedulesTests(TestCase):
    def test_it_creates_each_declared_schedule_once_and_is_idempotent(self):
        call_command("setup_schedules")
        call_command("setup_schedules")
        names = sorted(Schedule.objects.values_list("name", flat=True))
        self.assertEqual(names, sorted(entry["name"] for entry in SCHEDULES))

    def test_it_updates_changed_entries_and_deletes_stale_ones(self):
        call_command("setup_schedules")
        Schedule.objects.filter(name=SCHEDULES[0]["name"]).update(minutes=99)
        Schedule.objects.create(name=f"{PREFIX}retired", func="trading.tasks.heartbeat")
        Schedule.objects.create(name="someone-else", func="trading.tasks.heartbeat")
        call_command("setup_schedules")
        self.assertEqual(Schedule.objects.get(name=SCHEDULES[0]["name"]).minutes, 1)
        self.assertFalse(Schedule.objects.filter(name=f"{PREFIX}retired").exists())
        self.assertTrue(Schedule.objects.filter(name="someone-else").exists())
