"""Chaos: a few hundred EXPRESS payments through the local stack while the acquirer simulator injects random
timeouts (applied or lost), 5xx and slow answers (its fault API, POST /_sim/faults); then faults off, the
clock moved past the 7-day authorization validity (the 5-minute schedule runs reconciliation) and one more
run. The invariants: every payment terminal and unflagged, the captured totals equal the acquirer's (net of
refunds), no authorization left active, every rollback DLQ message's payment settled and none left visible.

``make test`` runs CHAOS_PAYMENTS=150 (default); a longer run: ``CHAOS_PAYMENTS=1000 make test ARGS=-kchaos``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
import requests

from .failure_support import (
    LIVE,
    flagged,
    item,
    machine_arn,
    queue_url,
    reconcile,
    start_payment,
    tokenize,
)
from .stack import APPROVED, CAPTURE_FAILS, DECLINES, AppStack, entered_states, running_app

PAYMENTS = int(os.environ.get("CHAOS_PAYMENTS", "150"))
CONCURRENCY = 6
TERMINAL = {"succeeded", "failed", "canceled"}
FAULTS = {
    "timeout_rate": 0.1,
    "error_rate": 0.05,
    "slow_rate": 0.1,
    "seed": 7,
    "operations": ["authorize", "capture", "void", "lookup"],
}


@pytest.fixture(scope="module")
def app() -> Iterator[AppStack]:
    with running_app(slow_ms=1300, acquirer_timeout_s=1) as stack:
        yield stack


def _set_faults(app: AppStack, spec: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(f"{app.acquirer.url}/_sim/faults", json=spec, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _plan(rng: random.Random) -> list[dict[str, Any]]:
    """The payments to make: mostly approved, some manual captures, declines and capture failures."""
    kinds = ["approved"] * 70 + ["manual"] * 12 + ["decline"] * 10 + ["capture_fails"] * 8
    plan = []
    for _ in range(PAYMENTS):
        kind = rng.choice(kinds)
        number = {
            "approved": APPROVED,
            "manual": APPROVED,
            "decline": rng.choice(sorted(DECLINES)),
            "capture_fails": CAPTURE_FAILS,
        }[kind]
        capture = "manual" if kind == "manual" else "automatic"
        plan.append({"number": number, "capture_method": capture, "amount": rng.randrange(100, 100_000)})
    return plan


@pytest.mark.timeout(max(600, PAYMENTS))  # ~0.5 s a payment on a busy machine: not the suite's 120 s default
def test_every_payment_settles_and_agrees_with_the_acquirer(app: AppStack) -> None:
    rng = random.Random(11)
    plan = _plan(rng)
    tokens = {number: tokenize(app, number) for number in {p["number"] for p in plan}}  # before the faults
    local = threading.local()

    def pay(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if not hasattr(local, "sfn"):  # one client per thread
            local.sfn = boto3.client(
                "stepfunctions", endpoint_url=app.runtime.endpoint_url, region_name=app.runtime.model.region
            )
        return start_payment(
            app,
            spec["number"],
            amount=spec["amount"],
            capture_method=spec["capture_method"],
            token=tokens[spec["number"]],
            sfn=local.sfn,
        )

    started = time.monotonic()
    _set_faults(app, FAULTS)
    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(pay, plan))
    finally:
        injected = requests.get(f"{app.acquirer.url}/_sim/faults", timeout=10).json()["injected"]
        _set_faults(app, {})
    chaos_s = time.monotonic() - started
    status_counts = Counter(r["status"] for _, r in results)
    assert set(status_counts) <= {"SUCCEEDED", "FAILED"}, status_counts
    payment_ids = [pid for pid, _ in results]
    before = Counter(item(app, pid)["status"] for pid in payment_ids)
    assert before["succeeded"] > PAYMENTS // 3, before  # the faults must not stop everything
    assert sum(injected.values()) >= PAYMENTS // 10, injected  # and they must have happened

    # Which payments took the void fallback (their messages may already be hidden by a scheduled run).
    rolled_back = {
        pid
        for pid, r in results
        if r["status"] == "FAILED" and "QueueRollback" in entered_states(app.history(r["executionArn"]))
    }

    # Past the 7-day validity: the schedule fires reconciliation (manual captures expire), then one more run.
    sfn = app.client("stepfunctions")
    arn = machine_arn(app, "ReconciliationStateMachine")
    seen = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]}
    app.runtime.clock.advance(8 * 24 * 3600)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 120
    while True:
        new = [
            e for e in sfn.list_executions(stateMachineArn=arn)["executions"] if e["executionArn"] not in seen
        ]
        if new and all(e["status"] != "RUNNING" for e in new):
            break
        assert time.monotonic() < deadline, "the scheduled reconciliation did not finish"
        time.sleep(0.2)
    assert [e["status"] for e in new] == ["SUCCEEDED"], new
    last = reconcile(app)
    assert last["status"] == "SUCCEEDED", last
    summary = json.loads(last["output"])
    assert summary["actions"].get("voided_and_failed", 0) == 0, summary  # nothing was left to settle

    items = {pid: item(app, pid) for pid in payment_ids}
    ledger = [a for a in app.acquirer.acquirer.ledger().body["authorizations"] if a["reference"] in items]
    by_payment: dict[str, list[dict[str, Any]]] = {}
    for auth in ledger:
        by_payment.setdefault(auth["reference"], []).append(auth)

    # Every payment terminal, none left in the reconciliation index.
    assert Counter(i["status"] for i in items.values()).keys() <= TERMINAL, Counter(
        i["status"] for i in items.values()
    )
    assert flagged(app) == []
    # No authorization left holding a customer's funds.
    assert [a["id"] for a in ledger if a["status"] in LIVE] == []
    # Captured totals agree, in all and payment by payment (net of refunds).
    net = {
        pid: sum(a["amount_captured"] - a["amount_refunded"] for a in by_payment.get(pid, []))
        for pid in items
    }
    ours = {
        pid: int(i.get("amount_captured", 0)) - int(i.get("amount_refunded", 0)) for pid, i in items.items()
    }
    assert sum(net.values()) == sum(ours.values()) and net == ours
    for pid, record in items.items():
        if record["status"] == "succeeded":
            assert net[pid] == record["amount"], pid  # captured exactly once, in full
        else:
            assert net[pid] == 0, pid  # a failed or canceled payment took no money
    # The rollback DLQ: nothing visible, and every payment that sent a message is settled (above).
    attributes = app.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(app, "RollbackDLQ"), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert int(attributes["ApproximateNumberOfMessages"]) == 0
    assert all(items[pid]["status"] in TERMINAL for pid in rolled_back)

    after = Counter(i["status"] for i in items.values())
    print(
        f"\nchaos: {PAYMENTS} payments in {chaos_s:.1f} s, injected {injected},"
        f" statuses after the workflow {dict(before)}, after reconciliation {dict(after)},"
        f" void fallbacks {len(rolled_back)}, last run {summary['found']}"
    )
