"""The simulator's 3-D Secure server over real HTTP: the API, authorize with a result, the challenge form,
heartbeats and signed callbacks (delivery, retries), 409/404 pages, the CLI options, the Lambda transport."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from simulators.acquirer import lambda_handler
from simulators.acquirer.core import Acquirer
from simulators.acquirer.server import AcquirerServer
from simulators.acquirer.signing import sign
from simulators.acquirer.threeds import DEFAULT_SECRET, with_query

from .callback_receiver import CallbackReceiver, verify
from .conftest import ACQUIRER_KEY

CHALLENGE = "4000000000003220"
FRICTIONLESS = "4000000000001067"
APPROVED = "4242424242424242"
SECRET = "whsec_test_3ds_in_tests"
RETURN_URL = "https://shop.example/return?order=1001&lang=ja"


class Sim:
    def __init__(self, server: AcquirerServer) -> None:
        self.server = server
        self.url = server.url
        self.http = requests.Session()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
        all_headers = {"Authorization": f"Bearer {ACQUIRER_KEY}", **headers}
        return self.http.request(method, self.url + path, json=body, headers=all_headers, timeout=10)

    def token(self, number: str) -> str:
        body = {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123", "holder_name": "T"}
        return str(self.call("POST", "/v1/tokens", body).json()["id"])

    def create(self, token: str, reference: str = "pay_3ds_1", **extra: Any) -> requests.Response:
        body = {"token": token, "amount": 150000, "currency": "jpy", "reference": reference}
        body.setdefault("return_url", RETURN_URL)
        return self.call("POST", "/v1/3ds/authentications", {**body, **extra})

    def challenge(self, reference: str = "pay_3ds_1", number: str = CHALLENGE) -> tuple[str, dict[str, Any]]:
        token = self.token(number)
        auth = self.create(token, reference).json()
        return token, dict(auth)

    def submit(self, auth_id: str, **form: str) -> requests.Response:
        return self.http.post(
            f"{self.url}/acs/challenge/{auth_id}", data=form, allow_redirects=False, timeout=10
        )

    def authorize(self, token: str, reference: str, result: dict[str, Any] | None) -> requests.Response:
        body: dict[str, Any] = {"token": token, "amount": 150000, "currency": "JPY", "reference": reference}
        if result is not None:
            body["three_d_secure_result"] = result
        return self.call("POST", "/v1/authorizations", body)

    def deliveries(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{self.url}/_sim/3ds/deliveries", timeout=10).json()["data"])


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as receiver:
        yield receiver


@pytest.fixture
def sim(receiver: CallbackReceiver) -> Iterator[Sim]:
    acquirer = Acquirer(api_keys={ACQUIRER_KEY}, threeds_secret=SECRET)
    acquirer.threeds.sender.backoff_s = 0.01
    with AcquirerServer(acquirer, port=0) as server:
        acquirer.callback_base_url = receiver.url  # set after start, as the app tests do
        yield Sim(server)


# --- server-to-server API ------------------------------------------------------------------------------


def test_challenge_card_requires_a_challenge(sim: Sim) -> None:
    answer = sim.create(sim.token(CHALLENGE))
    assert answer.status_code == 201
    auth = answer.json()
    assert auth["id"].startswith("3ds_") and auth["object"] == "three_d_secure"
    assert (auth["status"], auth["trans_status"], auth["eci"]) == ("challenge_required", "C", None)
    assert auth["authentication_value_ref"] is None
    assert auth["challenge_url"] == f"{sim.url}/acs/challenge/{auth['id']}"
    assert (auth["reference"], auth["return_url"], auth["currency"]) == ("pay_3ds_1", RETURN_URL, "JPY")
    assert abs(auth["created"] - time.time()) < 5
    assert sim.call("GET", f"/v1/3ds/authentications/{auth['id']}").json() == auth


def test_frictionless_card_is_authenticated_at_once(sim: Sim) -> None:
    auth = sim.create(sim.token(FRICTIONLESS)).json()
    assert (auth["status"], auth["trans_status"], auth["eci"]) == ("authenticated", "Y", "05")
    assert auth["authentication_value_ref"].startswith("cavv_") and auth["challenge_url"] is None


def test_same_idempotency_key_replays_the_first_answer(sim: Sim) -> None:
    token = sim.token(CHALLENGE)
    body = {
        "token": token,
        "amount": 5000,
        "currency": "JPY",
        "reference": "pay_idem",
        "return_url": RETURN_URL,
    }
    first = sim.call("POST", "/v1/3ds/authentications", body, **{"Idempotency-Key": "pay_idem:3ds"})
    again = sim.call("POST", "/v1/3ds/authentications", body, **{"Idempotency-Key": "pay_idem:3ds"})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    other = sim.call(
        "POST", "/v1/3ds/authentications", {**body, "amount": 5001}, **{"Idempotency-Key": "pay_idem:3ds"}
    )
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_error"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"token": "tok_unknown"}, "token"),
        ({"amount": 0}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"currency": "yen!"}, "currency"),
        ({"reference": ""}, "reference"),
        ({"return_url": "javascript:alert(1)"}, "return_url"),
    ],
)
def test_bad_requests_name_the_field(sim: Sim, change: dict[str, Any], param: str) -> None:
    body = {"token": sim.token(CHALLENGE), "amount": 100, "currency": "JPY", "reference": "pay_bad", **change}
    answer = sim.call("POST", "/v1/3ds/authentications", body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


def test_api_needs_the_key_and_unknown_ids_are_404(sim: Sim) -> None:
    no_key = sim.http.get(f"{sim.url}/v1/3ds/authentications/3ds_x", timeout=10)
    assert no_key.status_code == 401
    assert sim.call("GET", "/v1/3ds/authentications/3ds_nope").status_code == 404


# --- authorize with a 3-D Secure result ----------------------------------------------------------------


def test_authorize_after_a_completed_challenge(sim: Sim) -> None:
    token, auth = sim.challenge("pay_ok")
    assert sim.authorize(token, "pay_ok", None).json()["decline_code"] == "authentication_required"
    pending = sim.authorize(token, "pay_ok", {"authentication_id": auth["id"], "eci": "05"})
    assert pending.status_code == 402 and pending.json()["decline_code"] == "authentication_required"
    assert sim.submit(auth["id"], otp="123456", action="submit").status_code == 303
    approved = sim.authorize(token, "pay_ok", {"authentication_id": auth["id"], "eci": "05"})
    assert approved.status_code == 201 and approved.json()["status"] == "authorized"


def test_frictionless_result_authorizes(sim: Sim) -> None:
    token, auth = sim.challenge("pay_fr", FRICTIONLESS)
    answer = sim.authorize(token, "pay_fr", {"authentication_id": auth["id"], "eci": auth["eci"]})
    assert answer.status_code == 201


def test_mismatched_results_are_declined(sim: Sim) -> None:
    token, auth = sim.challenge("pay_a", FRICTIONLESS)
    result = {"authentication_id": auth["id"], "eci": "05"}
    other_token = sim.token(FRICTIONLESS)
    cases = [
        (token, "pay_b", result),  # another payment
        (other_token, "pay_a", result),  # another card
        (token, "pay_a", {"authentication_id": auth["id"], "eci": "07"}),  # another ECI
        (token, "pay_a", {"authentication_id": "3ds_unknown", "eci": "05"}),
        (token, "pay_a", {}),
    ]
    for case_token, reference, case_result in cases:
        answer = sim.authorize(case_token, reference, case_result)
        assert answer.status_code == 402, (reference, case_result)
        assert answer.json()["decline_code"] == "authentication_required"


def test_failed_challenge_result_is_declined(sim: Sim) -> None:
    token, auth = sim.challenge("pay_no")
    sim.submit(auth["id"], otp="000000", action="submit")
    answer = sim.authorize(token, "pay_no", {"authentication_id": auth["id"], "eci": "05"})
    assert answer.status_code == 402 and answer.json()["decline_code"] == "authentication_required"


# --- the challenge and its callbacks -------------------------------------------------------------------


def test_right_otp_authenticates_calls_back_signed_and_redirects(
    sim: Sim, receiver: CallbackReceiver
) -> None:
    _, auth = sim.challenge("pay_cb")
    answer = sim.submit(auth["id"], otp="123456", action="submit")
    assert answer.status_code == 303
    location = urlsplit(answer.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/return")
    assert parse_qs(location.query) == {"order": ["1001"], "lang": ["ja"], "payment_id": ["pay_cb"]}
    [callback] = receiver.of_type("challenge.completed")  # delivered before the 303
    assert callback.path == "/payments/pay_cb/3ds/callback"
    assert verify(callback.headers["payeasy-3ds-signature"], callback.body, SECRET, now=time.time())
    assert not verify(
        callback.headers["payeasy-3ds-signature"], callback.body, DEFAULT_SECRET, now=time.time()
    )
    event = callback.json()
    current = sim.call("GET", f"/v1/3ds/authentications/{auth['id']}").json()
    assert current["status"] == "authenticated"
    assert event == {
        "type": "challenge.completed",
        "authentication_id": auth["id"],
        "payment_id": "pay_cb",
        "trans_status": "Y",
        "eci": "05",
        "authentication_value_ref": current["authentication_value_ref"],
        "created": event["created"],
    }
    assert abs(event["created"] - time.time()) < 5


@pytest.mark.parametrize("form", [{"otp": "654321", "action": "submit"}, {"otp": "", "action": "cancel"}])
def test_wrong_otp_or_cancel_fails(sim: Sim, receiver: CallbackReceiver, form: dict[str, str]) -> None:
    _, auth = sim.challenge("pay_fail")
    answer = sim.submit(auth["id"], **form)
    assert answer.status_code == 303 and "payment_id=pay_fail" in answer.headers["Location"]
    event = receiver.of_type("challenge.completed")[0].json()
    assert (event["trans_status"], event["eci"], event["authentication_value_ref"]) == ("N", None, None)
    current = sim.call("GET", f"/v1/3ds/authentications/{auth['id']}").json()
    assert (current["status"], current["trans_status"]) == ("failed", "N")


def test_submit_without_otp_is_400_and_changes_nothing(sim: Sim, receiver: CallbackReceiver) -> None:
    _, auth = sim.challenge("pay_empty")
    answer = sim.submit(auth["id"], otp="", action="submit")
    assert answer.status_code == 400 and "otp" in answer.text
    assert sim.submit(auth["id"], action="dance").status_code == 400
    assert sim.call("GET", f"/v1/3ds/authentications/{auth['id']}").json()["status"] == "challenge_required"
    assert receiver.received == []


def test_completing_twice_is_409_and_calls_back_once(sim: Sim, receiver: CallbackReceiver) -> None:
    _, auth = sim.challenge("pay_twice")
    assert sim.submit(auth["id"], otp="123456", action="submit").status_code == 303
    again = sim.submit(auth["id"], otp="000000", action="submit")
    assert again.status_code == 409 and again.headers["Content-Type"].startswith("text/html")
    assert "already authenticated" in again.text
    assert sim.http.get(auth["challenge_url"], timeout=10).status_code == 409
    assert sim.call("GET", f"/v1/3ds/authentications/{auth['id']}").json()["status"] == "authenticated"
    assert len(receiver.of_type("challenge.completed")) == 1


def test_unknown_challenge_is_a_404_page(sim: Sim) -> None:
    page = sim.http.get(f"{sim.url}/acs/challenge/3ds_<script>", timeout=10)
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "<script>" not in page.text.split("<body>")[1]  # the id is escaped
    assert sim.submit("3ds_nope", otp="123456").status_code == 404
    assert sim.http.post(f"{sim.url}/acs/challenge/3ds_nope/heartbeat", timeout=10).status_code == 404


def test_without_return_url_the_acs_shows_a_done_page(sim: Sim) -> None:
    auth = sim.create(sim.token(CHALLENGE), "pay_noret", return_url=None).json()
    answer = sim.submit(auth["id"], otp="123456")
    assert answer.status_code == 200 and "authenticated" in answer.text


def test_challenge_page_is_self_contained(sim: Sim) -> None:
    _, auth = sim.challenge("pay_page")
    page = sim.http.get(auth["challenge_url"], timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.text
    for element in ('id="otp"', 'id="submit"', 'id="cancel"', "123456", "150000 JPY"):
        assert element in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no external resources
    assert "var every = 20000.0;" in html  # the default interval, in ms
    assert "var every = 200.0;" in sim.http.get(auth["challenge_url"] + "?heartbeat=0.2", timeout=10).text
    for bad in ("abc", "0", "nan", "-1"):
        answer = sim.http.get(f"{auth['challenge_url']}?heartbeat={bad}", timeout=10)
        assert answer.status_code == 400 and "heartbeat" in answer.text


def test_heartbeat_is_relayed_signed(sim: Sim, receiver: CallbackReceiver) -> None:
    _, auth = sim.challenge("pay_hb")
    answer = sim.http.post(f"{auth['challenge_url']}/heartbeat", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"received": True, "delivered": True}
    [beat] = receiver.of_type("challenge.heartbeat")
    assert beat.path == "/payments/pay_hb/3ds/callback"
    assert verify(beat.headers["payeasy-3ds-signature"], beat.body, SECRET, now=time.time())
    assert set(beat.json()) == {"type", "authentication_id", "payment_id", "created"}
    sim.submit(auth["id"], otp="123456")
    assert sim.http.post(f"{auth['challenge_url']}/heartbeat", timeout=10).status_code == 409
    assert len(receiver.of_type("challenge.heartbeat")) == 1  # none after completion


def test_delivery_retries_5xx_and_records_every_attempt(sim: Sim, receiver: CallbackReceiver) -> None:
    receiver.script = [503, 500]
    _, auth = sim.challenge("pay_retry")
    assert sim.submit(auth["id"], otp="123456").status_code == 303
    assert len(receiver.of_type("challenge.completed")) == 3
    attempts = [d for d in sim.deliveries() if d["payment_id"] == "pay_retry"]
    assert [(d["attempt"], d["status"]) for d in attempts] == [(1, 503), (2, 500), (3, 200)]
    assert attempts[0]["url"] == f"{receiver.url}/payments/pay_retry/3ds/callback"
    assert attempts[0]["type"] == "challenge.completed" and attempts[0]["authentication_id"] == auth["id"]


def test_delivery_does_not_retry_a_4xx(sim: Sim, receiver: CallbackReceiver) -> None:
    receiver.script = [401]
    _, auth = sim.challenge("pay_401")
    sim.submit(auth["id"], otp="123456")
    assert [d["status"] for d in sim.deliveries() if d["payment_id"] == "pay_401"] == [401]


def test_delivery_gives_up_after_connection_errors(sim: Sim) -> None:
    sim.server.acquirer.callback_base_url = "http://127.0.0.1:9"  # discard port: refused
    _, auth = sim.challenge("pay_down")
    answer = sim.submit(auth["id"], otp="123456")
    assert answer.status_code == 303  # the cardholder still goes back to the shop
    attempts = [d for d in sim.deliveries() if d["payment_id"] == "pay_down"]
    assert [d["attempt"] for d in attempts] == [1, 2, 3, 4]
    assert all(d["status"] is None and d["error"] for d in attempts)
    cleared = sim.http.delete(f"{sim.url}/_sim/3ds/deliveries", timeout=10)
    assert cleared.json()["data"] == [] and sim.deliveries() == []


# --- pieces --------------------------------------------------------------------------------------------


def test_sign_matches_the_documented_scheme() -> None:
    header = sign("s3cret", b'{"a":1}', 1700000000)
    assert header.startswith("t=1700000000,v1=")
    assert verify(header, b'{"a":1}', "s3cret", now=1700000100)
    assert not verify(header, b'{"a":2}', "s3cret", now=1700000100)
    assert not verify(header, b'{"a":1}', "s3cret", now=1700000301)  # stale


def test_with_query_keeps_other_parameters_and_the_fragment() -> None:
    assert with_query("https://s.example/r", "payment_id", "pay_1") == "https://s.example/r?payment_id=pay_1"
    assert (
        with_query("https://s.example/r?a=1&payment_id=old&b=#top", "payment_id", "pay_1")
        == "https://s.example/r?a=1&b=&payment_id=pay_1#top"
    )


def test_lambda_handler_serves_the_challenge(
    monkeypatch: pytest.MonkeyPatch, receiver: CallbackReceiver
) -> None:
    acquirer = lambda_handler.ACQUIRER
    monkeypatch.setattr(acquirer, "api_keys", {ACQUIRER_KEY})
    monkeypatch.setattr(acquirer.threeds, "callback_base_url", receiver.url)

    def event(method: str, path: str, body: bytes = b"", **headers: str) -> dict[str, Any]:
        return {
            "rawPath": path,
            "isBase64Encoded": True,
            "body": base64.b64encode(body).decode(),
            "headers": {"host": "abc.lambda-url.ap-northeast-1.on.aws", **headers},
            "requestContext": {"http": {"method": method, "path": path}},
        }

    key = {"authorization": f"Bearer {ACQUIRER_KEY}"}
    card = {"number": CHALLENGE, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    token = json.loads(
        lambda_handler.handler(event("POST", "/v1/tokens", json.dumps(card).encode(), **key), None)["body"]
    )
    create = {
        "token": token["id"],
        "amount": 100,
        "currency": "USD",
        "reference": "pay_l",
        "return_url": RETURN_URL,
    }
    made = lambda_handler.handler(
        event("POST", "/v1/3ds/authentications", json.dumps(create).encode(), **key), None
    )
    auth = json.loads(made["body"])
    assert made["statusCode"] == 201
    assert auth["challenge_url"] == f"https://abc.lambda-url.ap-northeast-1.on.aws/acs/challenge/{auth['id']}"
    page = lambda_handler.handler(event("GET", f"/acs/challenge/{auth['id']}"), None)
    assert page["statusCode"] == 200 and page["headers"]["content-type"].startswith("text/html")
    assert 'id="otp"' in page["body"]
    done = lambda_handler.handler(
        event("POST", f"/acs/challenge/{auth['id']}", b"otp=123456&action=submit"), None
    )
    assert done["statusCode"] == 303 and done["headers"]["location"].endswith("payment_id=pay_l")
    assert receiver.of_type("challenge.completed")[0].json()["trans_status"] == "Y"


def test_cli_options_and_environment(receiver: CallbackReceiver) -> None:
    env = {"THREEDS_CALLBACK_BASE_URL": receiver.url, "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.acquirer",
            "--port",
            "0",
            "--api-key",
            ACQUIRER_KEY,
            "--threeds-secret",
            "whsec_cli",
            "--heartbeat-interval",
            "7",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert receiver.url in banner
        url = re.search(r"on (http://\S+)", banner)
        assert url is not None
        sim = Sim.__new__(Sim)
        sim.url, sim.http = url.group(1), requests.Session()
        _, auth = sim.challenge("pay_cli")
        assert "var every = 7000.0;" in sim.http.get(auth["challenge_url"], timeout=10).text
        sim.submit(auth["id"], otp="123456")
        callback = receiver.of_type("challenge.completed")[0]
        assert verify(callback.headers["payeasy-3ds-signature"], callback.body, "whsec_cli", now=time.time())
    finally:
        process.terminate()
        process.wait(timeout=10)
