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
