"""The generation key: one reset invalidates every cached dashboard part."""

from __future__ import annotations

from django.core.cache import cache
from django.test import SimpleTestCase

from dashboard.cache import cached, generation_key, part_key, reset_generation_key


class GenerationKeyTests(SimpleTestCase):
    def setUp(self):
        cache.clear()

    def test_parts_are_reused_until_the_generation_is_reset(self):
        calls = []

        def build():
            calls.append(1)
            return {"n": len(calls)}

        key = part_key("overview", "paper")
        self.assertEqual(cached(key, build), {"n": 1})
        self.assertEqual(cached(key, build), {"n": 1})
        before = generation_key()
        reset_generation_key()
        self.assertNotEqual(generation_key(), before)
        self.assertEqual(cached(key, build), {"n": 2})

    def test_the_generation_survives_a_cleared_cache(self):
        first = generation_key()
        self.assertEqual(generation_key(), first)
        cache.clear()
        self.assertIsInstance(generation_key(), int)

    def test_part_keys_are_bounded_and_distinct(self):
        long = part_key("markets", ("q", "x" * 5000), 1)
        self.assertLess(len(long), 80)
        self.assertNotEqual(part_key("markets", ("q", "a"), 1), part_key("markets", ("q", "b"), 1))


class CycleSignalTests(SimpleTestCase):
    def test_a_finished_cycle_invalidates_the_cached_parts(self):
        from dashboard.cache import forget_generation, generation_key
        from trading.signals import cycle_finished

        forget_generation()
        before = generation_key()
        cycle_finished.send(sender=None, mode="replay", summary="test")
        forget_generation()
        self.assertNotEqual(generation_key(), before)


class RecentPagesTests(SimpleTestCase):
    """The process-local tier in front of a shared cache (off with the local-memory cache)."""

    def setUp(self):
        from dashboard.cache import _RecentPages

        self.pages = _RecentPages()
        self.pages.enabled = lambda: True  # as with Redis or the file cache

    def test_a_page_is_found_under_its_key_and_generation_only(self):
        self.pages.put("k", 1, b"one")
        self.assertEqual(self.pages.get("k", 1), b"one")
        self.assertIsNone(self.pages.get("k", 2))  # a new generation
        self.assertIsNone(self.pages.get("other", 1))

    def test_entries_expire_and_the_oldest_go_first(self):
        from unittest import mock

        with mock.patch("dashboard.cache.time.monotonic", return_value=1000.0):
            self.pages.put("old", 1, b"x")
        with mock.patch("dashboard.cache.time.monotonic", return_value=1000.0 + 31):
            self.assertIsNone(self.pages.get("old", 1))
        self.pages.SIZE = 3
        for n in range(5):
            self.pages.put(f"p{n}", 1, b"x")
        self.assertIsNone(self.pages.get("p0", 1))
        self.assertIsNone(self.pages.get("p1", 1))
        self.assertEqual(self.pages.get("p4", 1), b"x")

    def test_it_is_off_when_the_cache_is_this_process_memory(self):
        from dashboard.cache import _RecentPages

        with self.settings(
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        ):
            pages = _RecentPages()
            pages.put("k", 1, b"x")
            self.assertIsNone(pages.get("k", 1))
