"""Fault injection in the acquirer simulator (POST /_sim/faults): settings, validation, each fault kind's
effect on the acquirer's ledger, operation filters and determinism for a seed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from simulators.acquirer.core import Acquirer
from simulators.acquirer.faults import FaultInjector
from simulators.acquirer.server import AcquirerServer

from .conftest import ACQUIRER_KEY

SLOW_MS = 500  # the "timeout" delay: clients below give up after CLIENT_TIMEOUT_S
CLIENT_TIMEOUT_S = 0.25
SLOW_DELAY_MS = 100  # the "slow" delay set by most tests; an unhurt local call takes a few ms


class Sim:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def faults(self, spec: dict[str, Any] | None = None) -> requests.Response:
        if spec is None:
            return self.http.get(f"{self.url}/_sim/faults", timeout=5)
        return self.http.post(f"{self.url}/_sim/faults", json=spec, timeout=5)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
        all_headers = {"Authorization": f"Bearer {ACQUIRER_KEY}", **headers}
        return self.http.request(
            method, self.url + path, json=body, headers=all_headers, timeout=CLIENT_TIMEOUT_S
        )

    def token(self) -> str:
        body = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        return str(self.call("POST", "/v1/tokens", body).json()["id"])

    def authorize(self, token: str, reference: str) -> requests.Response:
        body = {"token": token, "amount": 1000, "currency": "JPY", "reference": reference}
        return self.call("POST", "/v1/authorizations", body, **{"Idempotency-Key": f"{reference}:auth"})

    def outcome(self, token: str, reference: str) -> str:
        """What the client sees: timeout | error | slow | ok."""
        started = time.monotonic()
        try:
            answer = self.authorize(token, reference)
        except requests.Timeout:
            return "timeout"
        if answer.status_code >= 500:
            return "error"
        assert answer.status_code == 201, answer.text
        return "slow" if time.monotonic() - started >= SLOW_DELAY_MS / 1000 else "ok"

    def charged(self, reference: str) -> int:
        ledger = self.http.get(
            f"{self.url}/v1/_admin/ledger", headers={"Authorization": f"Bearer {ACQUIRER_KEY}"}, timeout=5
        ).json()
        return len([a for a in ledger["authorizations"] if a["reference"] == reference])


@pytest.fixture
def sim() -> Iterator[Sim]:
    with AcquirerServer(Acquirer(api_keys={ACQUIRER_KEY}, slow_ms=SLOW_MS), port=0) as server:
        yield Sim(server.url)


def test_settings_are_shown_and_reset(sim: Sim) -> None:
    assert sim.faults().json() == {"enabled": False, "injected": {}}
    spec = {"timeout_rate": 0.1, "error_rate": 0.05, "slow_rate": 0.1, "seed": 7, "operations": ["authorize"]}
    assert sim.faults(spec).status_code == 200
    shown = sim.faults().json()
    assert shown["enabled"] is True and {k: shown[k] for k in spec} == spec
    assert shown["slow_delay_ms"] is None and shown["injected"] == {}
    assert sim.faults({}).json() == {"enabled": False, "injected": {}}


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ({"timeout_rate": 1.5}, "timeout_rate"),
        ({"error_rate": -0.1}, "error_rate"),
        ({"slow_rate": "0.1"}, "slow_rate"),
        ({"timeout_rate": 0.6, "error_rate": 0.6}, "timeout_rate"),
        ({"seed": "7"}, "seed"),
        ({"operations": ["authorise"]}, "operations"),
        ({"operations": "authorize"}, "operations"),
        ({"slow_delay_ms": -1}, "slow_delay_ms"),
        ({"timeout": 0.1}, "timeout"),
    ],
)
def test_a_bad_setting_is_400_naming_the_field_and_changes_nothing(
    sim: Sim, spec: dict[str, Any], param: str
) -> None:
    sim.faults({"error_rate": 0.5, "seed": 1})
    answer = sim.faults(spec)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    assert sim.faults().json()["error_rate"] == 0.5


def test_not_json_is_400(sim: Sim) -> None:
    answer = sim.http.post(f"{sim.url}/_sim/faults", data=b"{nope", timeout=5)
    assert answer.status_code == 400


def test_errors_answer_5xx_and_apply_nothing(sim: Sim) -> None:
    token = sim.token()
    sim.faults({"error_rate": 1, "seed": 3})
    statuses = {sim.authorize(token, f"pay_err_{i}").status_code for i in range(8)}
    assert statuses == {500, 503}  # both variants occur for this seed
    assert all(sim.charged(f"pay_err_{i}") == 0 for i in range(8))
    sim.faults({})
    retry = sim.authorize(token, "pay_err_0")  # the same Idempotency-Key runs for real: nothing was stored
    assert retry.status_code == 201 and sim.charged("pay_err_0") == 1


def test_timeouts_apply_or_lose_the_operation_and_a_retry_charges_once(sim: Sim) -> None:
    token = sim.token()
    sim.faults({"timeout_rate": 1, "seed": 11})
    references = [f"pay_to_{i}" for i in range(8)]
    for reference in references:
        with pytest.raises(requests.Timeout):
            sim.authorize(token, reference)
    injected = sim.faults().json()["injected"]
    applied = [r for r in references if sim.charged(r) == 1]
    assert injected == {"timeout_applied": len(applied), "timeout_lost": len(references) - len(applied)}
    assert 0 < len(applied) < len(references)  # both happen for this seed
    sim.faults({})
    for reference in references:
        assert sim.authorize(token, reference).status_code == 201
        assert sim.charged(reference) == 1  # replayed if applied, run now if lost: never twice


def test_slow_answers_correctly_within_the_timeout(sim: Sim) -> None:
    token = sim.token()
    sim.faults({"slow_rate": 1, "slow_delay_ms": SLOW_DELAY_MS})
    started = time.monotonic()
    answer = sim.authorize(token, "pay_slow")
    assert answer.status_code == 201 and SLOW_DELAY_MS / 1000 <= time.monotonic() - started < CLIENT_TIMEOUT_S
    assert sim.faults().json()["injected"] == {"slow": 1}


def test_the_slow_delay_defaults_below_the_timeout_delay(sim: Sim) -> None:
    token = sim.token()
    sim.faults({"slow_rate": 1})
    started = time.monotonic()
    assert sim.authorize(token, "pay_slow_default").status_code == 201
    assert SLOW_MS / 4000 <= time.monotonic() - started < CLIENT_TIMEOUT_S


def test_only_the_chosen_operations_fail(sim: Sim) -> None:
    token = sim.token()
    authorized = sim.authorize(token, "pay_ops").json()
    sim.faults({"error_rate": 1, "operations": ["capture"]})
    assert sim.authorize(token, "pay_ops_2").status_code == 201
    assert sim.token().startswith("tok_")
    capture = sim.call("POST", f"/v1/authorizations/{authorized['id']}/capture", {})
    assert capture.status_code in (500, 503)
    assert sim.call("GET", f"/v1/authorizations/{authorized['id']}").json()["status"] == "authorized"
    assert sim.call("POST", f"/v1/authorizations/{authorized['id']}/void", {}).status_code == 200


def test_the_same_seed_gives_the_same_faults_over_http(sim: Sim) -> None:
    token = sim.token()
    spec = {"timeout_rate": 0.2, "error_rate": 0.2, "slow_rate": 0.2, "slow_delay_ms": SLOW_DELAY_MS}

    def run(seed: int, label: str) -> list[str]:
        sim.faults({**spec, "seed": seed})
        return [sim.outcome(token, f"pay_{label}_{i}") for i in range(10)]

    first, second = run(7, "a"), run(7, "b")
    assert first == second and len(set(first)) >= 3


def test_the_injector_is_deterministic_and_follows_the_rates() -> None:
    spec = {"timeout_rate": 0.1, "error_rate": 0.05, "slow_rate": 0.1, "seed": 7}

    def draws(seed: int, operation: str = "authorize") -> list[str]:
        injector = FaultInjector()
        assert injector.configure({**spec, "seed": seed}).status == 200
        return [getattr(injector.draw(operation), "kind", "none") for _ in range(4000)]

    first = draws(7)
    assert first == draws(7) and first != draws(8)
    share = {kind: first.count(kind) / len(first) for kind in set(first)}
    assert abs(share["timeout_applied"] + share["timeout_lost"] - 0.1) < 0.02
    assert abs(share["error"] - 0.05) < 0.015 and abs(share["slow"] - 0.1) < 0.02
    assert set(draws(7, "refund")) == {"none"}  # not among the default operations
