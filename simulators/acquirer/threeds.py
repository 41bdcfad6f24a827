"""The acquirer's 3-D Secure server (docs/3ds.md): authentications, the ACS challenge, callbacks to PayEasy.

Frictionless cards authenticate at once; challenge cards wait for the cardholder on the challenge page
(acs_page.py). Heartbeats from the open page and the completion are relayed to PayEasy as signed callbacks.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from . import acs_page
from .callbacks import CallbackSender
from .replies import Reply, error

SANDBOX_OTP = "123456"
DEFAULT_CALLBACK_BASE_URL = "http://127.0.0.1:3000"
DEFAULT_SECRET = "whsec_test_3ds_local_5b1e9c0d7a"
DEFAULT_HEARTBEAT_INTERVAL = 20.0
ECI_AUTHENTICATED = "05"  # Visa/JCB/Amex: fully authenticated


@dataclass
class Authentication:
    id: str
    token: str
    amount: int
    currency: str
    reference: str
    return_url: str | None
    status: str  # challenge_required | authenticated | failed
    trans_status: str  # C (challenge pending) | Y | N
    created: int
    challenge_url: str | None = None
    eci: str | None = None
    authentication_value_ref: str | None = None
    heartbeats: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "three_d_secure",
            "status": self.status,
            "reference": self.reference,
            "amount": self.amount,
            "currency": self.currency,
            "challenge_url": self.challenge_url,
            "return_url": self.return_url,
            "trans_status": self.trans_status,
            "eci": self.eci,
            "authentication_value_ref": self.authentication_value_ref,
            "created": self.created,
        }

    def authenticate(self) -> None:
        self.status, self.trans_status, self.eci = "authenticated", "Y", ECI_AUTHENTICATED
        self.authentication_value_ref = f"cavv_{secrets.token_hex(10)}"

    def fail(self) -> None:
        self.status, self.trans_status = "failed", "N"


class ThreeDSServer:
    """Thread-safe; ``callback_base_url``, ``secret`` and ``heartbeat_interval`` may change at any time (tests
    start PayEasy on a random port after the simulator)."""

    def __init__(
        self,
        *,
        callback_base_url: str = DEFAULT_CALLBACK_BASE_URL,
        secret: str = DEFAULT_SECRET,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.callback_base_url = callback_base_url
        self.heartbeat_interval = heartbeat_interval
        self.sender = CallbackSender(secret, clock=clock)
        self._lock = threading.Lock()
        self._authentications: dict[str, Authentication] = {}

    @property
    def secret(self) -> str:
        return self.sender.secret

    @secret.setter
    def secret(self, value: str) -> None:
        self.sender.secret = value

    @property
    def clock(self) -> Callable[[], float]:
        """Time for ``created`` and signature stamps: a test may set its stack's virtual clock here."""
        return self.sender.clock

    @clock.setter
    def clock(self, value: Callable[[], float]) -> None:
        self.sender.clock = value

    # --- server-to-server API ------------------------------------------------------------------------

    def create(self, body: dict[str, Any], three_d_secure: str | None, base_url: str) -> Reply:
        """``three_d_secure``: the token's card mode (not_required | frictionless | challenge), None when the
        token is unknown."""
        if three_d_secure is None:
            return error(400, "resource_missing", "No such token.", "token")
        amount, currency = body.get("amount"), body.get("currency")
        if type(amount) is not int or amount <= 0:
            return error(400, "invalid_amount", "amount must be a positive integer.", "amount")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            return error(400, "invalid_currency", "currency must be an ISO 4217 code.", "currency")
        reference = body.get("reference")
        if not isinstance(reference, str) or not reference:
            return error(400, "invalid_reference", "reference (the payment id) is required.", "reference")
        return_url = body.get("return_url")
        if return_url is not None and not _is_http_url(return_url):
            return error(400, "invalid_return_url", "return_url must be an http(s) URL.", "return_url")
        auth = Authentication(
            id=f"3ds_{secrets.token_hex(12)}",
            token=str(body["token"]),
            amount=amount,
            currency=currency.upper(),
            reference=reference,
            return_url=return_url,
            status="challenge_required",
            trans_status="C",
            created=int(self.clock()),
        )
        if three_d_secure == "challenge":
            auth.challenge_url = f"{base_url.rstrip('/')}/acs/challenge/{auth.id}"
        else:  # frictionless: the issuer authenticates without the cardholder (a 3-D Secure 2 "Y" at once)
            auth.authenticate()
        with self._lock:
            self._authentications[auth.id] = auth
        return Reply(201, auth.public())

    def get(self, auth_id: str) -> Reply:
        with self._lock:
            auth = self._authentications.get(auth_id)
            if auth is None:
                return error(404, "resource_missing", f"No such authentication: {auth_id}", "id")
            return Reply(200, auth.public())

    def refusal(self, result: Any, token: str, reference: str) -> str | None:
        """Why an authorization's ``three_d_secure_result`` does not count (None: it does)."""
        if not isinstance(result, dict):
            return "three_d_secure_result must be an object."
        with self._lock:
            auth = self._authentications.get(str(result.get("authentication_id")))
            if auth is None:
                return "No such 3-D Secure authentication."
            if auth.token != token or auth.reference != reference:
                return "The 3-D Secure authentication belongs to another card or payment."
            if auth.status != "authenticated":
                return f"The 3-D Secure authentication is {auth.status}."
            if result.get("eci") not in (None, auth.eci):
                return "The ECI does not match the authentication."
        return None

    # --- the ACS (browser side) ----------------------------------------------------------------------

    def acs(self, method: str, rest: list[str], query: dict[str, str], form: dict[str, str]) -> Reply:
        match method, rest:
            case "GET", [auth_id]:
                return self.challenge_page(auth_id, query.get("heartbeat"))
            case "POST", [auth_id]:
                return self.complete(auth_id, form)
            case "POST", [auth_id, "heartbeat"]:
                return self.heartbeat(auth_id)
        return _page(404, acs_page.message_page("Not found", "There is no such page on this server."))

    def challenge_page(self, auth_id: str, heartbeat: str | None) -> Reply:
        interval = self.heartbeat_interval
        if heartbeat is not None:
            try:
                interval = float(heartbeat)
            except ValueError:
                interval = math.nan
            if not 0.05 <= interval <= 3600:  # also false for nan
                text = "heartbeat: must be a number of seconds between 0.05 and 3600."
                return _page(400, acs_page.message_page("Bad request", text))
        with self._lock:
            auth = self._authentications.get(auth_id)
            if auth is None:
                return _not_found(auth_id)
            if auth.status != "challenge_required":
                return _already_completed(auth)
            return _page(200, acs_page.challenge_page(auth.public(), SANDBOX_OTP, interval))

    def complete(self, auth_id: str, form: dict[str, str]) -> Reply:
        action = form.get("action", "submit")
        if action not in ("submit", "cancel"):
            return _page(400, acs_page.message_page("Bad request", "action: must be submit or cancel."))
        otp = form.get("otp", "").strip()
        if action == "submit" and not otp:
            return _page(400, acs_page.message_page("Bad request", "otp: enter the one-time code."))
        with self._lock:
            auth = self._authentications.get(auth_id)
            if auth is None:
                return _not_found(auth_id)
            if auth.status != "challenge_required":
                return _already_completed(auth)
            if action == "submit" and secrets.compare_digest(otp, SANDBOX_OTP):
                auth.authenticate()
            else:
                auth.fail()
            event = {
                "type": "challenge.completed",
                "authentication_id": auth.id,
                "payment_id": auth.reference,
                "trans_status": auth.trans_status,
                "eci": auth.eci,
                "authentication_value_ref": auth.authentication_value_ref,
                "created": int(self.clock()),
            }
            public = auth.public()
        # Delivered before the browser is sent back, so the merchant's page already finds the outcome.
        self.sender.deliver(self._callback_url(public["reference"]), event)
        if public["return_url"] is None:
            return _page(200, acs_page.done_page(public))
        location = with_query(public["return_url"], "payment_id", public["reference"])
        return Reply(303, {}, html=acs_page.redirect_page(location), headers={"Location": location})

    def heartbeat(self, auth_id: str) -> Reply:
        with self._lock:
            auth = self._authentications.get(auth_id)
            if auth is None:
                return error(404, "resource_missing", f"No such authentication: {auth_id}", "id")
            if auth.status != "challenge_required":
                return error(409, "challenge_completed", f"The challenge is already {auth.status}.")
            auth.heartbeats += 1
            event = {
                "type": "challenge.heartbeat",
                "authentication_id": auth.id,
                "payment_id": auth.reference,
                "created": int(self.clock()),
            }
        delivered = self.sender.deliver(self._callback_url(auth.reference), event)
        return Reply(200, {"received": True, "delivered": delivered})

    def deliveries(self) -> Reply:
        return Reply(200, {"object": "list", "data": self.sender.deliveries()})

    def _callback_url(self, payment_id: str) -> str:
        # The reference comes from the API caller: quoted so it stays one path segment.
        return f"{self.callback_base_url.rstrip('/')}/payments/{quote(payment_id, safe='')}/3ds/callback"


def with_query(url: str, name: str, value: str) -> str:
    """``url`` with ``name=value`` in its query (replacing an earlier ``name``, keeping everything else)."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    return urlunsplit(parts._replace(query=urlencode([*pairs, (name, value)])))


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _page(status: int, html: str) -> Reply:
    return Reply(status, {}, html=html)


def _not_found(auth_id: str) -> Reply:
    return _page(404, acs_page.message_page("Not found", f"No authentication {auth_id} is waiting here."))


def _already_completed(auth: Authentication) -> Reply:
    text = f"This authentication is already {auth.status}; it cannot be completed again."
    return _page(409, acs_page.message_page("Already completed", text))
