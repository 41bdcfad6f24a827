"""The merchant webhook receiver simulator over HTTP: recording, signature checks, failure modes, CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from payeasy import notifications as n

from simulators.merchant_webhooks.core import DEFAULT_SECRETS, Receiver
from simulators.merchant_webhooks.server import ReceiverServer

from .stack import ROOT, free_port

SECRET_A = DEFAULT_SECRETS["merchant_a"]


@pytest.fixture
def server() -> Iterator[ReceiverServer]:
    with ReceiverServer(Receiver(), port=0) as running:
        yield running


def post(server: ReceiverServer, merchant: str, body: bytes, secret: str, *, at: float | None = None) -> int:
    header = n.signature_header(secret, body, timestamp=int(time.time() if at is None else at))
    reply = requests.post(
        server.webhook_url(merchant), data=body, headers={n.SIGNATURE_HEADER: header}, timeout=5
    )
    return reply.status_code


def deliveries(server: ReceiverServer) -> list[dict[str, Any]]:
    return list(requests.get(f"{server.url}/_sim/deliveries", timeout=5).json()["deliveries"])


def control(server: ReceiverServer, spec: str) -> requests.Response:
    return requests.post(f"{server.url}/_sim/fail", data=spec, timeout=5)


BODY = b'{"id":"evt_1","type":"payment.succeeded"}'


def test_a_signed_delivery_is_accepted_and_recorded(server: ReceiverServer) -> None:
    assert post(server, "merchant_a", BODY, SECRET_A) == 200
    [delivery] = deliveries(server)
    assert (delivery["merchant"], delivery["status"], delivery["signature_valid"]) == (
        "merchant_a",
        200,
        True,
    )
    assert (delivery["event_id"], delivery["type"], delivery["body"]) == (
        "evt_1",
        "payment.succeeded",
        BODY.decode(),
    )


@pytest.mark.parametrize(
    ("merchant", "secret", "age_s"),
    [
        ("merchant_a", DEFAULT_SECRETS["merchant_b"], 0),  # another merchant's secret
        ("merchant_a", SECRET_A, 400),  # older than the 300 s tolerance (a replay)
    ],
)
def test_a_bad_signature_is_refused_and_recorded_invalid(
    server: ReceiverServer, merchant: str, secret: str, age_s: int
) -> None:
    assert post(server, merchant, BODY, secret, at=time.time() - age_s) == 400
    assert [d["signature_valid"] for d in deliveries(server)] == [False]


def test_an_unknown_merchant_is_404(server: ReceiverServer) -> None:
    assert post(server, "merchant_z", BODY, SECRET_A) == 404


def test_fail_count_fails_the_next_n_then_recovers(server: ReceiverServer) -> None:
    assert control(server, '{"count": 2}').json() == {"mode": "count", "count": 2}
    codes = [post(server, "merchant_a", BODY, SECRET_A) for _ in range(3)]
    assert codes == [503, 503, 200]
    # A failed delivery is still recorded, with its signature checked.
    assert [(d["status"], d["signature_valid"]) for d in deliveries(server)] == [
        (503, True),
        (503, True),
        (200, True),
    ]


def test_fail_always_until_off(server: ReceiverServer) -> None:
    control(server, '{"mode": "always"}')
    assert [post(server, "merchant_a", BODY, SECRET_A) for _ in range(4)] == [503] * 4
    control(server, '{"mode": "off"}')
    assert post(server, "merchant_a", BODY, SECRET_A) == 200


@pytest.mark.parametrize(
    "spec", ["nope", "[]", '{"count": -1}', '{"count": true}', '{"mode": "sometimes"}', "{}"]
)
def test_a_bad_control_request_is_400(server: ReceiverServer, spec: str) -> None:
    assert control(server, spec).status_code == 400


def test_deliveries_can_be_cleared(server: ReceiverServer) -> None:
    post(server, "merchant_a", BODY, SECRET_A)
    assert requests.delete(f"{server.url}/_sim/deliveries", timeout=5).status_code == 200
    assert deliveries(server) == []


def test_the_cli_serves_on_the_given_port_with_extra_secrets() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.merchant_webhooks",
            "--port",
            str(port),
            "--secret",
            "shop_x=whsec_x_1234",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/webhooks/shop_x"
        header = n.signature_header("whsec_x_1234", BODY, timestamp=int(time.time()))
        assert (
            requests.post(url, data=BODY, headers={n.SIGNATURE_HEADER: header}, timeout=5).status_code == 200
        )
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_cli_reports_a_busy_port() -> None:
    with ReceiverServer(Receiver(), port=0) as busy:
        port = busy.url.rsplit(":", 1)[1]
        done = subprocess.run(
            [sys.executable, "-m", "simulators.merchant_webhooks", "--port", port],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 1 and f"Port {port} is in use" in done.stderr  # werkzeug's own line
