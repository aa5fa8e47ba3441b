"""The language-model forecaster: the HTTP client, strict output, the budget, the record of
every call, reuse, samples and critic, the recorded forecaster, and the engine's view of it.

Every provider is faked at the httpx transport (``tests.trading.llm_fakes``); no test reaches
the network. No decision is taken from invalid output, and every call is
recorded.
"""

from __future__ import annotations

import threading
import unittest
from datetime import timedelta
from decimal import Decimal as D

import httpx
from django.db import connection, connections
from django.test import SimpleTestCase, TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from markets.models import Market
from tests.base import make_event
from tests.trading.llm_fakes import (
    API_KEY,
    T0,
    WALL,
    FakeLLM,
    completion,
    forecast_json,
    http_error,
    make_client,
    make_exchange,
    make_forecaster,
    make_llm_market,
    market_quote,
    rate_limited,
    read_timeout,
)
from trading import services
from trading.forecasters import forecaster_for
from trading.llm import (
    PRICES,
    PROVIDERS,
    ChatClient,
    InvalidOutput,
    LLMConfigError,
    LLMError,
    LLMForecaster,
    RecordedForecaster,
    call_cost,
    llm_forecaster,
    parse_forecast,
    price_for,
)
from trading.llm.ledger import budget_reserve, budget_settle, spent_on
from trading.llm.prices import DEFAULT_PRICE, input_token_bound
from trading.models import DailyCost, Decision, Forecast, LLMCall, Order, RiskSettings
from trading.prompts import data_spans
from trading.reasons import Reason

DAY = WALL.date()
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


# --- Output validation ----------------------------------------------------------------------------


class OutputValidationTests(SimpleTestCase):
    def test_a_valid_reply_is_read_exactly_as_decimals(self):
        parsed = parse_forecast(forecast_json(0.62, 0.7, key_factors=["a", "b"]))
        self.assertEqual(parsed.probability, D("0.620000"))
        self.assertIsInstance(parsed.probability, D)
        self.assertEqual(parsed.confidence, D("0.7"))
        self.assertEqual(parsed.key_factors, ("a", "b"))

    def test_probability_is_rounded_half_even_to_six_places(self):
        self.assertEqual(parse_forecast(forecast_json(0.12345650)).probability, D("0.123456"))
        self.assertEqual(parse_forecast(forecast_json(1)).probability, D("1"))
        self.assertEqual(parse_forecast(forecast_json(0)).probability, D("0"))

    def test_a_lone_fenced_block_is_accepted(self):
        reply = "```json\n" + forecast_json(0.3) + "\n```"
        self.assertEqual(parse_forecast(reply).probability, D("0.3"))
        self.assertEqual(
            parse_forecast("```\n" + forecast_json(0.3) + "\n```").probability, D("0.3")
        )

    def test_invalid_replies_are_rejected_with_a_reason(self):
        good = forecast_json()
        cases = {
            "non-JSON": ("The probability is about 60%.", "not JSON"),
            "text before the object": ("Here you go: " + good, "not JSON"),
            "text after the object": (good + " Hope this helps", "not JSON"),
            "two objects": (good + good, "not JSON"),
            "fence with text around": ("Sure!\n```json\n" + good + "\n```", "not JSON"),
            "fence then text": ("```json\n" + good + "\n```\nmore", "code fence"),
            "unclosed fence": ("```json\n" + good, "code fence"),
            "probability 1.7": (forecast_json(1.7), "outside [0, 1]"),
            "probability -0.2": (forecast_json(-0.2), "outside [0, 1]"),
            "NaN literal": (good.replace("0.62", "NaN"), "not a JSON number"),
            "Infinity literal": (good.replace("0.62", "Infinity"), "not a JSON number"),
            "huge exponent": (good.replace("0.62", "1e999"), "outside [0, 1]"),
            "string NaN": (forecast_json("NaN"), "a string"),
            "string 0.6?": (forecast_json("0.6?"), "a string"),
            "string number": (forecast_json("0.6"), "a string"),
            "boolean": (forecast_json(True), "bool"),
            "null": (forecast_json(None), "NoneType"),
            "confidence 2": (forecast_json(0.5, 2), "confidence 2 is outside"),
            "missing fields": ('{"probability": 0.6}', "missing field(s): confidence"),
            "extra field": (forecast_json(count=1000), "unexpected field(s): count"),
            "duplicate key": (
                '{"probability": 0.1, "probability": 0.99, "confidence": 1,'
                ' "rationale": "x", "key_factors": []}',
                "duplicate field",
            ),
            "array": ("[0.6, 0.7]", "not JSON"),
            "empty": ("   ", "empty reply"),
            "none": (None, "empty reply"),
            "100 kB reply": (
                '{"probability": 0.6, "rationale": "' + "x" * 100_000 + '"}',
                "too long",
            ),
            "refusal": ("I'm sorry, but I can't help with predicting that.", "model refused"),
            "refusal 2": ("I cannot provide forecasts.", "model refused"),
            "empty rationale": (forecast_json(rationale="  "), "rationale is empty"),
            "long rationale": (forecast_json(rationale="y" * 1001), "longer than 1000"),
            "factors not a list": (forecast_json(key_factors="one"), "expected a list"),
            "too many factors": (
                forecast_json(key_factors=[str(i) for i in range(9)]),
                "at most 8",
            ),
            "numeric factor": (forecast_json(key_factors=[1]), "expected a string"),
        }
        for name, (reply, reason) in cases.items():
            with self.subTest(name):
                with self.assertRaises(InvalidOutput) as caught:
                    parse_forecast(reply)
                self.assertIn(reason, caught.exception.reason)
        with self.assertRaises(InvalidOutput) as caught:
            parse_forecast("I'm sorry, I can't.")
        self.assertTrue(caught.exception.refusal)


# --- Prices (cost arithmetic exact) -----------------------------------------------------------


class PriceTests(SimpleTestCase):
    def test_costs_are_exact_and_rounded_up_to_the_micro_dollar(self):
        grok = price_for("grok-4")
        self.assertEqual(call_cost(grok, 1000, 100), D("0.004500"))  # 1000×3 + 100×15 per 1M
        mini = price_for("gpt-4o-mini")
        # (1234 × 0.15 + 567 × 0.60) / 1e6 = 0.0005253 → up to 0.000526
        self.assertEqual(call_cost(mini, 1234, 567), D("0.000526"))
        self.assertEqual(call_cost(mini, 0, 0), D("0"))
        self.assertEqual(call_cost(price_for("gpt-5-nano"), 20, 0), D("0.000001"))  # 0.000001 exact
        self.assertEqual(call_cost(price_for("gpt-5-nano"), 21, 0), D("0.000002"))  # 0.00000105 up

    def test_model_names_are_normalised_without_prefix_matching(self):
        self.assertEqual(price_for("x-ai/grok-4"), PRICES["grok-4"])
        self.assertEqual(price_for("grok-4-0709"), PRICES["grok-4"])
        self.assertEqual(price_for("openai/gpt-4o-2024-08-06"), PRICES["gpt-4o"])
        self.assertEqual(price_for("openai/gpt-4o-mini:free"), PRICES["gpt-4o-mini"])
        self.assertEqual(price_for("GPT-4.1-Mini"), PRICES["gpt-4.1-mini"])
        self.assertIs(price_for("gpt-5-pro"), DEFAULT_PRICE)  # not gpt-5's price
        self.assertFalse(DEFAULT_PRICE.known)
        self.assertEqual(call_cost(DEFAULT_PRICE, 1_000_000, 1_000_000), D("90"))

    def test_a_local_server_is_free_and_an_override_wins(self):
        self.assertEqual(call_cost(price_for("llama3.1", free=True), 10**6, 10**6), D("0"))
        override = price_for("grok-4", override=(D("1"), D("2")))
        self.assertEqual(call_cost(override, 500_000, 250_000), D("1.000000"))

    def test_the_worst_case_bounds_every_byte_as_a_token(self):
        bound = input_token_bound(MESSAGES)
        self.assertEqual(bound, 16 + (16 + 9 + 6) + (16 + 2 + 4))
        self.assertEqual(bound, 69)
        client = make_client(FakeLLM())
        self.assertEqual(client.worst_case_cost(MESSAGES, 100), call_cost(client.price, 69, 100))


# --- The HTTP client --------------------------------------------------------------------------


class ClientTests(SimpleTestCase):
    def test_the_request_is_an_openai_chat_completion_with_the_key_only_in_the_header(self):
        fake = FakeLLM(completion(forecast_json()))
        result = make_client(fake).complete(MESSAGES, max_output_tokens=300)
        request = fake.requests[0]
        self.assertEqual(request.method, "POST")
        self.assertEqual(str(request.url), "https://api.x.ai/v1/chat/completions")
        self.assertEqual(request.headers["authorization"], f"Bearer {API_KEY}")
        body = fake.bodies[0]
        self.assertEqual(body["model"], "grok-4")
        self.assertEqual(body["messages"], MESSAGES)
        self.assertEqual(body["max_completion_tokens"], 300)
        self.assertEqual(body["response_format"], {"type": "json_object"})
        self.assertNotIn("tools", body)
        self.assertNotIn("functions", body)
        self.assertNotIn(API_KEY, request.content.decode())
        self.assertEqual((result.input_tokens, result.output_tokens), (1000, 100))
        self.assertEqual(result.cost, D("0.004500"))
        self.assertNotIn(API_KEY, repr(make_client(fake)))

    def test_each_provider_has_its_endpoint(self):
        expected = {
            "xai": "https://api.x.ai/v1/chat/completions",
            "openai": "https://api.openai.com/v1/chat/completions",
            "openrouter": "https://openrouter.ai/api/v1/chat/completions",
            "local": "http://127.0.0.1:11434/v1/chat/completions",
            "custom": "https://llm.example.test/v1/chat/completions",
        }
        for name, url in expected.items():
            with self.subTest(name):
                fake = FakeLLM(completion(forecast_json()))
                make_client(fake, provider=name).complete(MESSAGES, max_output_tokens=50)
                self.assertEqual(str(fake.requests[0].url), url)
                has_auth = "authorization" in fake.requests[0].headers
                self.assertEqual(has_auth, PROVIDERS[name].needs_key)
        fake = FakeLLM(completion(forecast_json()))
        make_client(fake, provider="openrouter").complete(MESSAGES, max_output_tokens=50)
        self.assertEqual(fake.bodies[0]["max_tokens"], 50)
        fake = FakeLLM(completion(forecast_json()))
        make_client(fake, provider="custom").complete(MESSAGES, max_output_tokens=50)
        self.assertNotIn("response_format", fake.bodies[0])

    def test_unsafe_or_incomplete_configurations_are_refused(self):
        fake = FakeLLM()
        with self.assertRaisesRegex(LLMConfigError, "needs LLM_API_KEY"):
            ChatClient(provider=PROVIDERS["openai"], model="gpt-4o", transport=fake.transport)
        with self.assertRaisesRegex(LLMConfigError, "needs LLM_BASE_URL"):
            ChatClient(provider=PROVIDERS["custom"], model="m", transport=fake.transport)
        with self.assertRaisesRegex(LLMConfigError, "plain http"):
            ChatClient(
                provider=PROVIDERS["custom"],
                model="m",
                api_key="k-123456",
                base_url="http://llm.example.test/v1",
            )
        with self.assertRaisesRegex(LLMConfigError, "LLM_MODEL"):
            ChatClient(provider=PROVIDERS["local"], model="")

    def test_429_then_success_retries_once_with_jittered_backoff(self):
        fake = FakeLLM(rate_limited(), completion(forecast_json()))
        result = make_client(fake).complete(MESSAGES, max_output_tokens=50)
        self.assertEqual(fake.calls, 2)
        self.assertEqual(fake.sleeps, [0.75])  # step 1 s: half fixed + half × rand 0.5
        self.assertEqual(result.attempts, 2)

    def test_retry_after_is_honoured_up_to_the_cap(self):
        fake = FakeLLM(rate_limited("3"), rate_limited("999"), completion(forecast_json()))
        make_client(fake).complete(MESSAGES, max_output_tokens=50)
        self.assertEqual(fake.sleeps, [3.0, 20.0])

    def test_a_429_storm_gives_up_after_the_bounded_retries(self):
        fake = FakeLLM(rate_limited())
        with self.assertRaises(LLMError) as caught:
            make_client(fake, max_retries=3).complete(MESSAGES, max_output_tokens=50)
        self.assertEqual(fake.calls, 4)
        self.assertEqual(len(fake.sleeps), 3)
        self.assertEqual(caught.exception.kind, "rate_limited")
        self.assertEqual(caught.exception.unknown_attempts, 0)
        self.assertIn("gave up after 4 attempts", caught.exception.message)

    def test_quota_and_client_errors_are_not_retried(self):
        for reply, kind in [
            (http_error(429, "You exceeded your current quota", "insufficient_quota"), "quota"),
            (http_error(402, "Insufficient credits"), "quota"),
            (http_error(400, "response_format is not supported"), "client"),
            (http_error(401, "bad key"), "client"),
        ]:
            with self.subTest(kind=kind, status=reply.status_code):
                fake = FakeLLM(reply)
                with self.assertRaises(LLMError) as caught:
                    make_client(fake).complete(MESSAGES, max_output_tokens=50)
                self.assertEqual(fake.calls, 1)
                self.assertEqual(caught.exception.kind, kind)

    def test_5xx_and_timeouts_are_retried_and_lost_answers_are_counted(self):
        fake = FakeLLM(http_error(503), read_timeout(), completion(forecast_json()))
        result = make_client(fake).complete(MESSAGES, max_output_tokens=50)
        self.assertEqual((fake.calls, result.attempts, result.unknown_attempts), (3, 3, 1))
        fake = FakeLLM(httpx.ConnectError("refused"))
        with self.assertRaises(LLMError) as caught:
            make_client(fake).complete(MESSAGES, max_output_tokens=50)
        self.assertEqual(
            (caught.exception.kind, caught.exception.unknown_attempts), ("transport", 0)
        )
        fake = FakeLLM(read_timeout())
        with self.assertRaises(LLMError) as caught:
            make_client(fake).complete(MESSAGES, max_output_tokens=50)
        self.assertEqual((caught.exception.kind, caught.exception.unknown_attempts), ("timeout", 3))

    def test_an_oversized_or_malformed_http_reply_is_an_error(self):
        fake = FakeLLM(httpx.Response(200, content=b"x" * (600 * 1024)))
        with self.assertRaisesRegex(LLMError, "larger than"):
            make_client(fake).complete(MESSAGES, max_output_tokens=50)
        for body in [b"<html>502</html>", b"[]", b'{"choices": []}', b'{"choices": [{}]}']:
            with self.subTest(body=body):
                fake = FakeLLM(httpx.Response(200, content=body))
                with self.assertRaises(LLMError) as caught:
                    make_client(fake).complete(MESSAGES, max_output_tokens=50)
                self.assertEqual(caught.exception.kind, "bad_reply")
                self.assertEqual(fake.calls, 1)

    def test_reasoning_tokens_outside_completion_tokens_are_billed(self):
        fake = FakeLLM(
            completion(forecast_json(), prompt_tokens=100, completion_tokens=10, total_tokens=1110)
        )
        result = make_client(fake).complete(MESSAGES, max_output_tokens=50)
        self.assertEqual(result.output_tokens, 1010)
        self.assertEqual(result.cost, call_cost(price_for("grok-4"), 100, 1010))


# --- The budget ----------------------------------------------------------------------------


class BudgetTests(TestCase):
    def test_reservations_are_exact_at_the_boundary(self):
        budget = D("0.3")
        self.assertTrue(budget_reserve(day=DAY, amount=D("0.1"), budget=budget))
        self.assertTrue(budget_reserve(day=DAY, amount=D("0.1"), budget=budget))
        self.assertTrue(budget_reserve(day=DAY, amount=D("0.1"), budget=budget))  # exactly 0.3
        self.assertFalse(budget_reserve(day=DAY, amount=D("0.000001"), budget=budget))
        self.assertEqual(spent_on(DAY), D("0.3"))
        budget_settle(day=DAY, reserved=D("0.3"), actual=D("0.000007"), calls=3)
        self.assertEqual(spent_on(DAY), D("0.000007"))
        self.assertTrue(budget_reserve(day=DAY, amount=D("0.299993"), budget=budget))
        self.assertFalse(budget_reserve(day=DAY, amount=D("0.000001"), budget=budget))
        self.assertFalse(budget_reserve(day=DAY, amount=D("0.5"), budget=budget))
        row = DailyCost.objects.get(date=DAY)
        self.assertEqual((row.llm_cost, row.llm_calls), (D("0.3"), 3))
        # A zero budget allows only free calls, and never below zero.
        self.assertTrue(budget_reserve(day=DAY - timedelta(1), amount=D("0"), budget=D("0")))
        self.assertFalse(
            budget_reserve(day=DAY - timedelta(1), amount=D("0.000001"), budget=D("0"))
        )

    def test_many_small_amounts_do_not_drift(self):
        for _ in range(30):
            self.assertTrue(budget_reserve(day=DAY, amount=D("0.1"), budget=D("3")))
        self.assertFalse(budget_reserve(day=DAY, amount=D("0.000001"), budget=D("3")))
        for _ in range(30):
            budget_settle(day=DAY, reserved=D("0.1"), actual=D("0.000001"))
        self.assertEqual(spent_on(DAY), D("0.000030"))


@unittest.skipUnless(connection.vendor == "postgresql", "needs concurrent connections")
class SharedBudgetTests(TransactionTestCase):
    def test_concurrent_processes_cannot_overspend(self):
        winners = []
        barrier = threading.Barrier(8)

        def worker():
            try:
                barrier.wait()
                if budget_reserve(day=DAY, amount=D("0.01"), budget=D("0.03")):
                    winners.append(1)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(winners), 3)
        self.assertEqual(spent_on(DAY), D("0.03"))


# --- The forecaster, recorded calls and the engine -------------------------------------------


class LLMForecasterTestBase(TestCase):
    def setUp(self):
        self.market = make_llm_market(
            "LLM-ONE",
            title="Will the Fed cut rates in March?",
            rules_primary="Resolves YES if the FOMC lowers the target range at its March meeting.",
        )
        self.quote = market_quote("LLM-ONE")

    def decide(self, forecaster, *quotes):
        quotes = quotes or (self.quote,)
        exchange, _ = make_exchange(*quotes)
        report = services.decide_run(exchange=exchange, forecaster=forecaster, mode="paper", now=T0)
        services.execute_run(exchange=exchange, mode="paper", now=T0, reconciled_at=timezone.now())
        return report


class RecordedCallTests(LLMForecasterTestBase):
    def test_a_valid_answer_is_a_forecast_recorded_with_its_exact_cost(self):
        fake = FakeLLM(completion(forecast_json(0.62, 0.7)))
        forecaster = make_forecaster(fake)
        result = forecaster.forecast(self.quote, now=T0)
        self.assertTrue(result.valid, result.error)
        self.assertEqual((result.probability, result.confidence), (D("0.62"), D("0.7")))
        self.assertEqual((result.model, result.prompt_version), ("grok-4", "v1"))
        self.assertFalse(result.price_shown)
        call = LLMCall.objects.get()
        self.assertEqual(result.llm_call_id, call.pk)
        self.assertEqual(
            (call.status, call.provider, call.model, call.prompt_version, call.purpose),
            ("ok", "xai", "grok-4", "v1", "forecast"),
        )
        self.assertEqual((call.input_tokens, call.output_tokens), (1000, 100))
        self.assertEqual(call.cost, D("0.0045"))
        self.assertEqual(call.market, self.market)
        self.assertEqual(call.response, forecast_json(0.62, 0.7))
        self.assertEqual(call.created_at, WALL)
        cost = DailyCost.objects.get(date=DAY)
        self.assertEqual((cost.llm_cost, cost.llm_calls), (D("0.0045"), 1))
        self.assertEqual((cost.input_tokens, cost.output_tokens), (1000, 100))
        # What the server received: the model, the quoted market text, no key in the body.
        body, user = fake.bodies[0], fake.user_content()
        self.assertEqual(body["model"], "grok-4")
        self.assertEqual([m["role"] for m in body["messages"]], ["system", "user"])
        self.assertEqual(fake.requests[0].headers["authorization"], f"Bearer {API_KEY}")
        self.assertNotIn(API_KEY, fake.requests[0].content.decode())
        ((start, end),) = data_spans(user)
        for text in (self.market.title, self.market.rules_primary):
            self.assertIn(text, user[start:end])
            self.assertNotIn(text, user[:start] + user[end:])
            self.assertNotIn(text, fake.system_content())
        self.assertNotIn("0.41", user)  # the price is not shown by default
        self.assertNotIn(API_KEY, call.prompt)
        self.assertIn(self.market.title, call.prompt)

    def test_the_price_is_shown_only_when_asked_and_that_is_recorded(self):
        fake = FakeLLM(completion(forecast_json()))
        result = make_forecaster(fake, show_price=True).forecast(self.quote, now=T0)
        self.assertTrue(result.price_shown)
        self.assertIn("$0.4100", fake.user_content())
        start, _ = data_spans(fake.user_content())[0]
        self.assertLess(fake.user_content().index("$0.4100"), start)

    def test_a_secret_echoed_by_the_model_is_redacted_everywhere(self):
        fake = FakeLLM(
            completion(forecast_json(rationale=f"key {API_KEY} and Bearer abcdefghijkl"))
        )
        result = make_forecaster(fake).forecast(self.quote, now=T0)
        call = LLMCall.objects.get()
        self.assertNotIn(API_KEY, call.response)
        self.assertNotIn(API_KEY, result.rationale)
        self.assertIn("[redacted]", result.rationale)

    def test_control_characters_in_a_reply_are_removed_before_storing(self):
        fake = FakeLLM(
            completion(forecast_json(rationale="a\u0000b\u0007c", key_factors=["x\u0000"]))
        )
        result = make_forecaster(fake).forecast(self.quote, now=T0)
        self.assertEqual((result.rationale, result.key_factors), ("abc", ["x"]))
        self.assertNotIn("\x00", LLMCall.objects.get().response)

    def test_an_unknown_model_is_charged_the_conservative_default_with_a_note(self):
        fake = FakeLLM(completion(forecast_json(), prompt_tokens=1000, completion_tokens=100))
        make_forecaster(fake, client=make_client(fake, model="mystery-1")).forecast(
            self.quote, now=T0
        )
        call = LLMCall.objects.get()
        self.assertEqual(call.status, "ok")
        self.assertEqual(call.cost, D("0.0225"))  # 1000 × 15 + 100 × 75 per 1M
        self.assertIn("conservative default", call.error)

    def test_a_reply_without_usage_is_charged_the_worst_case(self):
        fake = FakeLLM(completion(forecast_json(), prompt_tokens=None, completion_tokens=None))
        forecaster = make_forecaster(fake)
        forecaster.forecast(self.quote, now=T0)
        worst = forecaster.client.worst_case_cost(fake.bodies[0]["messages"], 2000)
        self.assertEqual(LLMCall.objects.get().cost, worst)
        self.assertEqual(spent_on(DAY), worst)

    def test_a_market_not_in_the_database_makes_no_call(self):
        fake = FakeLLM(completion(forecast_json()))
        result = make_forecaster(fake).forecast(market_quote("NOPE"), now=T0)
        self.assertFalse(result.valid)
        self.assertEqual(fake.calls, 0)


class EngineOnBadOutputTests(LLMForecasterTestBase):
    """Each bad answer: INVALID_FORECAST, no order, an LLMCall with the status and the error."""

    CASES = {
        "non-JSON": ([completion("Probably yes, about 70%.")], "invalid", "not JSON", 1),
        "probability 1.7": ([completion(forecast_json(1.7, 0.9))], "invalid", "outside [0, 1]", 1),
        "NaN": ([completion(forecast_json().replace("0.62", "NaN"))], "invalid", "NaN", 1),
        "missing fields": ([completion('{"probability": 0.9}')], "invalid", "missing field", 1),
        "refusal text": (
            [completion("I'm sorry, I can't help with that.")],
            "invalid",
            "refused",
            1,
        ),
        "refusal field": ([completion(None, refusal="I can't assist")], "invalid", "refused", 1),
        "cut off": (
            [completion('{"probability": 0.9', finish_reason="length")],
            "invalid",
            "cut off",
            1,
        ),
        "timeout": ([read_timeout()], "error", "ReadTimeout", 3),
        "429 storm": ([rate_limited()], "error", "HTTP 429", 3),
        "500 storm": ([http_error(500)], "error", "HTTP 500", 3),
        "quota": ([http_error(429, "quota", "insufficient_quota")], "error", "quota", 1),
        "NUL bytes": ([completion("\x00\x00 not json \x00")], "invalid", "not JSON", 1),
        "HTML reply": ([httpx.Response(200, content=b"<html>oops</html>")], "error", "not JSON", 1),
    }

    def test_no_trade_from_invalid_output_and_every_call_is_recorded(self):
        for index, (name, (replies, status, error, requests)) in enumerate(self.CASES.items()):
            with self.subTest(name):
                ticker = f"BAD-{index:02d}"
                make_llm_market(ticker)
                fake = FakeLLM(*replies)
                report = self.decide(make_forecaster(fake), market_quote(ticker))
                self.assertEqual(report.counts, {Reason.INVALID_FORECAST.value: 1})
                self.assertEqual(fake.calls, requests)
                decision = Decision.objects.get(market__ticker=ticker)
                self.assertEqual(decision.reason, Reason.INVALID_FORECAST)
                self.assertFalse(Order.objects.filter(market__ticker=ticker).exists())
                call = LLMCall.objects.get(market__ticker=ticker)
                self.assertEqual(call.status, status)
                self.assertIn(error, call.error)
                forecast = Forecast.objects.get(market__ticker=ticker)
                self.assertFalse(forecast.valid)
                self.assertIsNone(forecast.probability)
                self.assertEqual(forecast.llm_call, call)
                self.assertIn(error, forecast.error)
        self.assertEqual(Order.objects.count(), 0)

    def test_a_confident_valid_answer_trades_within_the_limits(self):
        fake = FakeLLM(completion(forecast_json(0.9, 0.9)))
        report = self.decide(make_forecaster(fake))
        self.assertEqual(report.counts.get("traded"), 1, report.counts)
        order = Order.objects.get()
        self.assertLessEqual(order.max_cost, D("50"))  # 5% of $1000
        self.assertEqual(Forecast.objects.get().llm_call, LLMCall.objects.get())

    def test_a_timeout_is_charged_at_the_worst_case_for_each_lost_answer(self):
        fake = FakeLLM(read_timeout())
        forecaster = make_forecaster(fake)
        self.decide(forecaster)
        worst = forecaster.client.worst_case_cost(fake.bodies[0]["messages"], 2000)
        call = LLMCall.objects.get()
        self.assertEqual(call.cost, worst * 3)
        self.assertEqual(spent_on(DAY), worst * 3)
        self.assertEqual(DailyCost.objects.get().llm_calls, 1)

    def test_429_then_success_is_one_recorded_call_charged_once(self):
        fake = FakeLLM(rate_limited(), completion(forecast_json(0.41, 0.9)))
        report = self.decide(make_forecaster(fake))
        self.assertEqual(fake.calls, 2)
        self.assertEqual(report.counts, {Reason.EDGE_TOO_SMALL.value: 1})
        call = LLMCall.objects.get()
        self.assertEqual((call.status, call.cost), ("ok", D("0.0045")))
        self.assertEqual(spent_on(DAY), D("0.0045"))


class BudgetInTheEngineTests(TestCase):
    def setUp(self):
        event = make_event(category="Test", title="Test event")
        self.tickers = [f"LLM-{c}" for c in "ABCDE"]
        for ticker in self.tickers:
            make_llm_market(ticker, event=event)
        self.quotes = [market_quote(t) for t in self.tickers]

    def reservation(self, forecaster):
        """The worst case of one call; the same for every market here (same text lengths)."""
        market = Market.objects.select_related("event").get(ticker=self.tickers[0])
        messages = forecaster.messages_for(forecaster.market_text(market), self.quotes[0], now=T0)
        return forecaster.client.worst_case_cost(messages, forecaster.max_output_tokens)

    def test_budget_exhausted_in_mid_cycle(self):
        fake = FakeLLM(completion(forecast_json(0.41, 0.9)))  # $0.0045 each
        forecaster = make_forecaster(fake)
        reserve = self.reservation(forecaster)
        actual = D("0.0045")
        # First call: 0 + R ≤ B; second: a + R ≤ B; third: 2a + R > B.
        budget = reserve + actual + actual / 2
        RiskSettings.objects.filter(pk=RiskSettings.load().pk).update(ai_daily_budget=budget)
        exchange, _ = make_exchange(*self.quotes)
        report = services.decide_run(exchange=exchange, forecaster=forecaster, mode="paper", now=T0)
        self.assertEqual(fake.calls, 2)
        self.assertEqual(
            report.counts,
            {Reason.EDGE_TOO_SMALL.value: 2, Reason.AI_BUDGET_EXHAUSTED.value: 3},
        )
        reasons = dict(Decision.objects.values_list("market__ticker", "reason"))
        self.assertEqual(
            [reasons[t] for t in self.tickers],
            ["edge_too_small", "edge_too_small"] + ["ai_budget_exhausted"] * 3,
        )
        statuses = list(LLMCall.objects.order_by("pk").values_list("status", flat=True))
        self.assertEqual(statuses, ["ok", "ok", "refused", "refused", "refused"])
        refused = LLMCall.objects.filter(status="refused").first()
        self.assertIn("budget exhausted", refused.error)
        self.assertEqual((refused.cost, refused.input_tokens), (D("0"), 0))
        self.assertEqual(Forecast.objects.filter(valid=True).count(), 2)
        self.assertEqual(Forecast.objects.filter(valid=False).count(), 3)
        self.assertEqual(Order.objects.count(), 0)
        day = DailyCost.objects.get(date=DAY)
        self.assertEqual((day.llm_cost, day.llm_calls), (actual * 2, 2))

    def test_an_exhausted_budget_sends_nothing(self):
        RiskSettings.objects.filter(pk=RiskSettings.load().pk).update(ai_daily_budget=D("0"))
        fake = FakeLLM(completion(forecast_json()))
        result = make_forecaster(fake).forecast(self.quotes[0], now=T0)
        self.assertTrue(result.budget_exhausted)
        self.assertFalse(result.valid)
        self.assertEqual(fake.calls, 0)
        self.assertEqual(LLMCall.objects.get().status, "refused")
        self.assertEqual(result.llm_call_id, LLMCall.objects.get().pk)

    def test_a_retry_needs_its_own_reservation(self):
        fake = FakeLLM(rate_limited(), completion(forecast_json()))
        forecaster = make_forecaster(fake)
        reserve = self.reservation(forecaster)
        RiskSettings.objects.filter(pk=RiskSettings.load().pk).update(
            ai_daily_budget=reserve + reserve / 2
        )
        result = forecaster.forecast(self.quotes[0], now=T0)
        self.assertEqual(fake.calls, 1)
        self.assertTrue(result.budget_exhausted)
        call = LLMCall.objects.get()
        self.assertEqual(call.status, "error")
        self.assertIn("budget exhausted before a retry", call.error)
        self.assertEqual((call.cost, spent_on(DAY)), (D("0"), D("0")))


class ReuseTests(LLMForecasterTestBase):
    def setUp(self):
        super().setUp()
        self.fake = FakeLLM(completion(forecast_json(0.62, 0.7)))
        self.forecaster = make_forecaster(self.fake)
        self.decide(self.forecaster)  # writes the first Forecast row, price 0.41
        self.assertEqual(self.fake.calls, 1)
        self.first_call = LLMCall.objects.get()

    def test_a_fresh_forecast_is_reused_without_a_call(self):
        result = self.forecaster.forecast(self.quote, now=T0 + timedelta(minutes=30))
        self.assertEqual(self.fake.calls, 1)
        self.assertTrue(result.valid)
        self.assertEqual(result.llm_call_id, self.first_call.pk)
        self.assertEqual(result.probability, D("0.62"))

    def test_reuse_survives_rows_written_by_later_cycles_until_the_ttl_from_the_origin(self):
        # A later cycle records the reused forecast again, at a price that has drifted a bit.
        later = market_quote("LLM-ONE", bid="0.43", ask="0.45")
        Forecast.objects.create(
            market=self.market,
            forecaster="llm",
            model="grok-4",
            prompt_version="v1",
            probability=D("0.62"),
            confidence=D("0.7"),
            market_price=D("0.44"),
            llm_call=self.first_call,
            created_at=T0 + timedelta(hours=3),
        )
        self.assertTrue(
            self.forecaster.forecast(later, now=T0 + timedelta(hours=3, minutes=59)).valid
        )
        self.assertEqual(self.fake.calls, 1)
        self.forecaster.forecast(later, now=T0 + timedelta(hours=4))  # 240 min after the origin
        self.assertEqual(self.fake.calls, 2)

    def test_a_price_move_beyond_the_setting_asks_again(self):
        within = market_quote("LLM-ONE", bid="0.45", ask="0.47")  # mid 0.46: moved 0.05
        self.forecaster.forecast(within, now=T0 + timedelta(minutes=10))
        self.assertEqual(self.fake.calls, 1)
        moved = market_quote("LLM-ONE", bid="0.45", ask="0.48")  # mid 0.465: moved 0.055
        result = self.forecaster.forecast(moved, now=T0 + timedelta(minutes=10))
        self.assertEqual(self.fake.calls, 2)
        self.assertNotEqual(result.llm_call_id, self.first_call.pk)

    def test_another_model_prompt_or_price_setting_does_not_reuse(self):
        other = make_forecaster(self.fake, client=make_client(self.fake, model="grok-3-mini"))
        other.forecast(self.quote, now=T0 + timedelta(minutes=5))
        make_forecaster(self.fake, samples=3).forecast(self.quote, now=T0 + timedelta(minutes=5))
        make_forecaster(self.fake, show_price=True).forecast(
            self.quote, now=T0 + timedelta(minutes=5)
        )
        self.assertEqual(self.fake.calls, 1 + 1 + 3 + 1)

    def test_the_lookup_is_cached_and_a_broken_cache_falls_back_to_the_database(self):
        later = T0 + timedelta(minutes=20)
        with CaptureQueriesContext(connection) as miss:
            self.forecaster.forecast(self.quote, now=later)
        with CaptureQueriesContext(connection) as hit:
            self.forecaster.forecast(self.quote, now=later)
        self.assertEqual(len(hit), len(miss) - 2)

        class BrokenCache:
            def get(self, *a, **k):
                raise ConnectionError("redis down")

            set = delete = get

        broken = make_forecaster(self.fake, cache=BrokenCache())
        with self.assertLogs("trading.llm.forecaster", "WARNING"):
            result = broken.forecast(self.quote, now=later)
        self.assertEqual(result.llm_call_id, self.first_call.pk)
        self.assertEqual(self.fake.calls, 1)

    def test_a_zero_ttl_never_reuses(self):
        RiskSettings.objects.filter(pk=RiskSettings.load().pk).update(forecast_ttl_minutes=0)
        self.forecaster.forecast(self.quote, now=T0 + timedelta(minutes=1))
        self.assertEqual(self.fake.calls, 2)


class SamplesAndCriticTests(LLMForecasterTestBase):
    def test_the_median_of_n_samples(self):
        fake = FakeLLM(
            completion(forecast_json(0.60, 0.5, rationale="low")),
            completion(forecast_json(0.90, 0.9, rationale="high")),
            completion(forecast_json(0.70, 0.6, rationale="middle")),
        )
        result = make_forecaster(fake, samples=3).forecast(self.quote, now=T0)
        self.assertEqual((result.probability, result.confidence), (D("0.7"), D("0.6")))
        self.assertEqual(result.rationale, "middle")
        self.assertEqual(result.prompt_version, "v1+n3")
        self.assertEqual(LLMCall.objects.filter(status="ok").count(), 3)
        self.assertEqual(result.llm_call_id, LLMCall.objects.order_by("pk").last().pk)

    def test_a_minority_of_invalid_samples_is_tolerated_a_majority_is_not(self):
        fake = FakeLLM(
            completion(forecast_json(0.60, 0.5)),
            completion("nonsense"),
            completion(forecast_json(0.65, 0.8)),
        )
        result = make_forecaster(fake, samples=3).forecast(self.quote, now=T0)
        self.assertEqual((result.probability, result.confidence), (D("0.625"), D("0.65")))
        fake = FakeLLM(completion(forecast_json(0.6)), completion("nonsense"), completion("{"))
        result = make_forecaster(fake, samples=3).forecast(self.quote, now=T0)
        self.assertFalse(result.valid)
        self.assertIn("2 of 3 samples invalid", result.error)

    def test_the_critic_reviews_the_draft_as_data_and_has_the_last_word(self):
        fake = FakeLLM(
            completion(forecast_json(0.62, 0.7, rationale="draft")),
            completion(forecast_json(0.55, 0.6, rationale="revised")),
        )
        result = make_forecaster(fake, critic=True).forecast(self.quote, now=T0)
        self.assertEqual((result.probability, result.rationale), (D("0.55"), "revised"))
        self.assertEqual(result.prompt_version, "v1+critic")
        critic = LLMCall.objects.get(purpose="critic")
        self.assertEqual(result.llm_call_id, critic.pk)
        user = fake.user_content(1)
        spans = data_spans(user)
        self.assertEqual(len(spans), 2)
        draft_at = user.index('"rationale": "draft"')
        self.assertTrue(spans[1][0] < draft_at < spans[1][1])

    def test_a_failed_critic_makes_the_forecast_invalid(self):
        fake = FakeLLM(completion(forecast_json(0.62, 0.7)), completion("no idea"))
        result = make_forecaster(fake, critic=True).forecast(self.quote, now=T0)
        self.assertFalse(result.valid)
        self.assertTrue(result.error.startswith("critic: not JSON"))

    def test_samples_are_bounded(self):
        with self.assertRaises(LLMConfigError):
            make_forecaster(FakeLLM(), samples=0)
        with self.assertRaises(LLMConfigError):
            make_forecaster(FakeLLM(), samples=10)


class RecordedForecasterTests(LLMForecasterTestBase):
    def test_it_replays_the_latest_valid_answer_at_or_before_now_without_a_call(self):
        call = LLMCall.objects.create(
            provider="xai", model="grok-4", prompt_version="v1", prompt="p"
        )
        for minutes, p, valid in [
            (0, "0.30", True),
            (60, "0.40", True),
            (90, None, False),
            (120, "0.99", True),
        ]:
            Forecast.objects.create(
                market=self.market,
                forecaster="llm",
                model="grok-4",
                prompt_version="v1",
                valid=valid,
                probability=D(p) if p else None,
                confidence=D("0.8") if p else None,
                llm_call=call,
                created_at=T0 + timedelta(minutes=minutes),
                price_shown=True,
            )
        Forecast.objects.create(
            market=self.market,
            forecaster="llm",
            model="other",
            probability=D("0.5"),
            confidence=D("0.5"),
            created_at=T0 + timedelta(minutes=100),
        )
        recorded = RecordedForecaster(source="llm", model="grok-4")
        result = recorded.forecast(self.quote, now=T0 + timedelta(minutes=110))
        self.assertEqual(
            (
                result.probability,
                result.valid,
                result.model,
                result.llm_call_id,
                result.price_shown,
            ),
            (D("0.40"), True, "grok-4", call.pk, True),
        )
        self.assertEqual(
            RecordedForecaster().forecast(self.quote, now=T0 + timedelta(minutes=110)).model,
            "other",
        )
        missing = recorded.forecast(self.quote, now=T0 - timedelta(minutes=1))
        self.assertFalse(missing.valid)
        self.assertIn("no recorded llm forecast", missing.error)

    def test_a_replay_cycle_trades_on_the_recorded_answer(self):
        Forecast.objects.create(
            market=self.market,
            forecaster="llm",
            model="grok-4",
            probability=D("0.9"),
            confidence=D("0.9"),
            created_at=T0 - timedelta(hours=1),
        )
        report = self.decide(RecordedForecaster())
        self.assertEqual(report.counts.get("traded"), 1, report.counts)
        self.assertEqual(Forecast.objects.filter(forecaster="recorded").count(), 1)
        self.assertEqual(LLMCall.objects.count(), 0)


class FactoryTests(TestCase):
    def test_no_provider_is_a_clear_configuration_error(self):
        with override_settings(LLM_PROVIDER="none"):
            with self.assertRaisesRegex(LLMConfigError, "needs LLM_PROVIDER"):
                llm_forecaster()

    @override_settings(
        LLM_PROVIDER="openrouter",
        LLM_MODEL="x-ai/grok-4",
        LLM_API_KEY=API_KEY,
        LLM_BASE_URL="",
        LLM_TIMEOUT_SECONDS=12,
        LLM_SAMPLES=3,
        LLM_CRITIC=True,
        LLM_SHOW_PRICE=True,
        LLM_MAX_OUTPUT_TOKENS=900,
    )
    def test_settings_build_the_forecaster(self):
        forecaster = llm_forecaster()
        self.assertIsInstance(forecaster, LLMForecaster)
        self.assertEqual(forecaster.client.base_url, "https://openrouter.ai/api/v1")
        self.assertEqual(forecaster.client.timeout, 12.0)
        self.assertEqual(forecaster.client.price, PRICES["grok-4"])
        self.assertEqual(
            (forecaster.samples, forecaster.critic, forecaster.show_price), (3, True, True)
        )
        self.assertEqual(forecaster.max_output_tokens, 900)
        self.assertEqual(forecaster.version, "v1+n3+critic")
        self.assertIsInstance(forecaster_for("llm"), LLMForecaster)

    @override_settings(
        LLM_PROVIDER="local",
        LLM_MODEL="llama3.1",
        LLM_API_KEY=None,
        LLM_PRICE_INPUT_PER_M="1",
        LLM_PRICE_OUTPUT_PER_M="2",
    )
    def test_local_needs_no_key_and_an_explicit_price_override_wins(self):
        client = llm_forecaster().client
        self.assertEqual(client.base_url, "http://127.0.0.1:11434/v1")
        self.assertEqual(call_cost(client.price, 10**6, 10**6), D("3"))  # the override wins

    @override_settings(LLM_PROVIDER="xai", LLM_MODEL="grok-4", LLM_API_KEY=API_KEY, LLM_SAMPLES=0)
    def test_out_of_range_settings_are_refused(self):
        with self.assertRaisesRegex(LLMConfigError, "LLM_SAMPLES"):
            llm_forecaster()

    @override_settings(RECORDED_SOURCE_FORECASTER="baseline", RECORDED_SOURCE_MODEL="m")
    def test_the_recorded_forecaster_factory(self):
        from trading.llm import recorded_forecaster

        forecaster = recorded_forecaster()
        self.assertEqual(
            (forecaster.name, forecaster.source, forecaster.model), ("recorded", "baseline", "m")
        )


class QuestionForecastTests(TestCase):
    def test_a_question_outside_the_database_is_forecast_from_its_own_text(self):
        from types import SimpleNamespace

        question = SimpleNamespace(
            ticker="KXQ-1",
            event_ticker="KXQ",
            category="Economics",
            event_title="Fed March",
            title="Will the Fed cut?",
            subtitle="",
            rules="YES if the Fed cuts in March.",
            close_time=T0 + timedelta(days=1),
        )
        fake = FakeLLM(completion(forecast_json(0.3, 0.6)))
        result = make_forecaster(fake).forecast_question(market_quote("KXQ-1"), question, now=T0)
        self.assertEqual(result.probability, D("0.3"))
        user = fake.user_content()
        ((start, end),) = data_spans(user)
        self.assertIn("YES if the Fed cuts in March.", user[start:end])
        self.assertIsNone(LLMCall.objects.get().market)
