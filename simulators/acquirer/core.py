"""The acquirer's in-memory state and rules, independent of any transport (HTTP server or Lambda).

Every public method returns a ``Reply`` (replies.py): HTTP status, JSON body (or an HTML page), and how long
the transport must wait before answering (the simulated network/processing latency and the slow test cards).
Routes: the bearer-key API under ``/v1``, the 3-D Secure challenge pages under ``/acs`` (the cardholder's
browser: no key), and the test controls under ``/_sim`` (faults, 3-D Secure callback deliveries).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .cards import bin_country, card_for
from .faults import FaultInjector, operation_of
from .replies import Reply
from .replies import error as _error
from .threeds import DEFAULT_CALLBACK_BASE_URL, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_SECRET, ThreeDSServer

DEFAULT_API_KEY = "sk_test_acquirer_local"


@dataclass
class _Vaulted:
    token: str
    number: str  # the PAN lives here and only here
    cvc: str
    exp_month: int
    exp_year: int
    holder_name: str
    brand: str
    created: int

    def public(self) -> dict[str, Any]:
        card = card_for(self.number)
        return {
            "id": self.token,
            "object": "token",
            "brand": self.brand,
            "last4": self.number[-4:],
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
            "bin_country": bin_country(self.number),
            "three_d_secure": card.three_d_secure,
            "fingerprint": hashlib.sha256(("fp:" + self.number).encode()).hexdigest()[:16],
            "created": self.created,
        }


@dataclass
class _Authorization:
    id: str
    token: str
    amount: int
    currency: str
    reference: str
    status: str  # authorized | declined | captured | voided | capture_failed
    created: int
    decline_code: str | None = None
    message: str | None = None
    amount_captured: int = 0
    amount_refunded: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "authorization",
            "status": self.status,
            "amount": self.amount,
            "amount_captured": self.amount_captured,
            "amount_refunded": self.amount_refunded,
            "currency": self.currency,
            "reference": self.reference,
            "token": self.token,
            "decline_code": self.decline_code,
            "message": self.message,
            "created": self.created,
        }


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _luhn(number: str) -> bool:
    digits = [int(c) for c in reversed(number)]
    return sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits)) % 10 == 0


def _brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"34", "37"}:
        return "amex"
    if number[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number.startswith("35"):
        return "jcb"
    return "unknown"


class Acquirer:
    """Thread-safe: one lock around all state (the simulator answers in micro-seconds; contention is moot)."""

    def __init__(
        self,
        *,
        api_keys: set[str],
        latency_ms: int = 0,
        slow_ms: int = 3000,
        callback_base_url: str = DEFAULT_CALLBACK_BASE_URL,
        threeds_secret: str = DEFAULT_SECRET,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        public_url: str | None = None,
    ) -> None:
        self.api_keys = api_keys
        self.latency_ms = latency_ms
        self.slow_ms = slow_ms
        self.public_url = public_url  # base of challenge URLs; None: from the request's Host header
        self.threeds = ThreeDSServer(
            callback_base_url=callback_base_url, secret=threeds_secret, heartbeat_interval=heartbeat_interval
        )
        self.faults = FaultInjector()
        self._lock = threading.Lock()
        self._vault: dict[str, _Vaulted] = {}
        self._authorizations: dict[str, _Authorization] = {}
        self._refunds: list[dict[str, Any]] = []
        self._idempotency: dict[tuple[str, str], tuple[str, Reply | None]] = {}

    # --- entry point used by every transport ------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw_body: bytes
    ) -> Reply:
        lower = {k.lower(): v for k, v in headers.items()}
        latency = _int_header(lower, "x-sim-latency-ms", self.latency_ms)
        slow = _int_header(lower, "x-sim-slow-ms", self.slow_ms)
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["acs", "challenge"]:  # the cardholder's browser: no API key, form bodies
            form = dict(parse_qsl(raw_body.decode("utf-8", "replace"), keep_blank_values=True))
            reply = self.threeds.acs(method, parts[2:], query, form)
            reply.delay_ms += latency
            return reply
        if parts[:1] == ["_sim"]:
            return self._sim(method, parts[1:], raw_body)
        key = lower.get("authorization", "").removeprefix("Bearer ").strip()
        if key not in self.api_keys:
            return Reply(401, _error(401, "invalid_api_key", "Invalid API key provided.").body, latency)
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            return Reply(400, _error(400, "invalid_json", "Body is not JSON.").body, latency)
        if not isinstance(body, dict):
            return Reply(400, _error(400, "invalid_json", "Body must be a JSON object.").body, latency)
        operation = operation_of(method, parts)
        fault = self.faults.draw(operation) if operation else None
        if fault is not None and fault.kind == "error":
            reply = _error(fault.status, "processor_unavailable", "Injected fault: try again later.")
            reply.delay_ms = latency
            return reply
        if fault is not None and fault.kind == "timeout_lost":  # too late for the client, nothing applied
            reply = _error(504, "timeout", "Injected fault: the request was lost.")
            reply.delay_ms = latency + slow
            return reply
        base_url = self.public_url or _base_url(lower)
        idem_key = lower.get("idempotency-key")
        if method == "POST" and idem_key:
            reply = self._idempotent(key, idem_key, method, path, body, slow, base_url)
        else:
            reply = self._route(method, path, query, body, slow, base_url)
        if fault is not None and fault.kind == "timeout_applied":  # applied, but answered too late
            reply.delay_ms = max(reply.delay_ms, slow)
        elif fault is not None:
            reply.delay_ms += self.faults.slow_delay_ms(slow)
        reply.delay_ms += latency
        return reply

    def _sim(self, method: str, rest: list[str], raw_body: bytes) -> Reply:
        """Test controls, without the API key (like a sandbox dashboard): faults and 3DS deliveries."""
        match method, rest:
            case "GET", ["faults"]:
                return self.faults.current()
            case "POST", ["faults"]:
                try:
                    spec = json.loads(raw_body) if raw_body.strip() else {}
                except ValueError:
                    return _error(400, "invalid_json", "Body is not JSON.")
                return self.faults.configure(spec)
            case "GET", ["3ds", "deliveries"]:
                return self.threeds.deliveries()
            case "DELETE", ["3ds", "deliveries"]:
                self.threeds.sender.clear()
                return self.threeds.deliveries()
        return _error(404, "not_found", f"No route for {method} /_sim/{'/'.join(rest)}.")

    @property
    def callback_base_url(self) -> str:
        return self.threeds.callback_base_url

    @callback_base_url.setter
    def callback_base_url(self, value: str) -> None:
        self.threeds.callback_base_url = value

    def _idempotent(
        self,
        api_key: str,
        idem_key: str,
        method: str,
        path: str,
        body: dict[str, Any],
        slow: int,
        base_url: str,
    ) -> Reply:
        fingerprint = hashlib.sha256(
            f"{method} {path} {json.dumps(body, sort_keys=True)}".encode()
        ).hexdigest()
        slot = (api_key, idem_key)
        with self._lock:
            seen = self._idempotency.get(slot)
            if seen is None:
                self._idempotency[slot] = (fingerprint, None)
        if seen is not None:
            stored_fingerprint, stored = seen
            if stored_fingerprint != fingerprint:
                return _error(
                    422,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters.",
                )
            if stored is None:
                return _error(409, "idempotency_in_progress", "A request with this key is in progress.")
            return self._replay(path, body, stored, slow)
        reply = self._route(method, path, {}, body, slow, base_url)
        with self._lock:
            if reply.status >= 500 or reply.body.get("_do_not_store"):
                del self._idempotency[slot]  # nothing happened: a retry must really run again
            else:
                self._idempotency[slot] = (fingerprint, Reply(reply.status, reply.body))
        reply.body.pop("_do_not_store", None)
        return reply

    def _replay(self, path: str, body: dict[str, Any], stored: Reply, slow: int) -> Reply:
        delay = 0
        if path == "/v1/authorizations":
            with self._lock:
                token = self._vault.get(str(body.get("token")))
            if token is not None and card_for(token.number).authorize_slow == "always":
                delay = slow
        return Reply(stored.status, dict(stored.body), delay)

    def _route(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any], slow: int, base_url: str
    ) -> Reply:
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["v1"]:
            return _error(404, "not_found", f"Unknown path {path}.")
        rest = parts[1:]
        match method, rest:
            case "POST", ["tokens"]:
                return self.tokenize(body)
            case "GET", ["tokens", token]:
                return self.get_token(token)
            case "POST", ["authorizations"]:
                return self.authorize(body, slow)
            case "GET", ["authorizations"]:
                return self.list_authorizations(query.get("reference"))
            case "GET", ["authorizations", auth_id]:
                return self.get_authorization(auth_id)
            case "POST", ["authorizations", auth_id, "capture"]:
                return self.capture(auth_id, body, slow)
            case "POST", ["authorizations", auth_id, "void"]:
                return self.void(auth_id)
            case "POST", ["refunds"]:
                return self.refund(body)
            case "GET", ["_admin", "ledger"]:
                return self.ledger()
            case "POST", ["3ds", "authentications"]:
                with self._lock:
                    vaulted = self._vault.get(str(body.get("token")))
                mode = card_for(vaulted.number).three_d_secure if vaulted else None
                return self.threeds.create(body, mode, base_url)
            case "GET", ["3ds", "authentications", auth_id]:
                return self.threeds.get(auth_id)
        return _error(404, "not_found", f"No route for {method} {path}.")

    # --- operations ----------------------------------------------------------------------------------

    def tokenize(self, body: dict[str, Any]) -> Reply:
        number = str(body.get("number", "")).replace(" ", "")
        if not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn(number):
            return _error(400, "invalid_number", "The card number is not a valid card number.", "number")
        month, year = body.get("exp_month"), body.get("exp_year")
        if not isinstance(month, int) or not 1 <= month <= 12 or not isinstance(year, int):
            return _error(400, "invalid_expiry", "Expiry month/year are invalid.", "exp_month")
        cvc = str(body.get("cvc", ""))
        if not cvc.isdigit() or len(cvc) not in (3, 4):
            return _error(400, "invalid_cvc", "The CVC is invalid.", "cvc")
        vaulted = _Vaulted(
            _new_id("tok"),
            number,
            cvc,
            month,
            year,
            str(body.get("holder_name", "")),
            _brand(number),
            int(time.time()),
        )
        with self._lock:
            self._vault[vaulted.token] = vaulted
        return Reply(201, vaulted.public())

    def get_token(self, token: str) -> Reply:
        with self._lock:
            vaulted = self._vault.get(token)
        if vaulted is None:
            return _error(404, "resource_missing", f"No such token: {token}", "token")
        return Reply(200, vaulted.public())

    def authorize(self, body: dict[str, Any], slow: int) -> Reply:
        amount, currency = body.get("amount"), body.get("currency")
        if type(amount) is not int or amount <= 0:
            return _error(400, "invalid_amount", "amount must be a positive integer.", "amount")
        if not isinstance(currency, str) or len(currency) != 3:
            return _error(400, "invalid_currency", "currency must be an ISO 4217 code.", "currency")
        with self._lock:
            vaulted = self._vault.get(str(body.get("token")))
        if vaulted is None:
            return _error(400, "resource_missing", "No such token.", "token")
        card = card_for(vaulted.number)
        auth = _Authorization(
            _new_id("auth"),
            vaulted.token,
            amount,
            currency.upper(),
            str(body.get("reference", "")),
            "authorized",
            int(time.time()),
        )
        if card.decline_code:
            auth.status, auth.decline_code, auth.message = (
                "declined",
                card.decline_code,
                "The card was declined.",
            )
        elif (result := body.get("three_d_secure_result")) is not None:
            # A result is checked whatever the card: it must be this card's and payment's, and authenticated.
            refusal = self.threeds.refusal(result, vaulted.token, auth.reference)
            if refusal:
                auth.status, auth.decline_code, auth.message = "declined", "authentication_required", refusal
        elif card.three_d_secure == "challenge":
            auth.status, auth.decline_code = "declined", "authentication_required"
            auth.message = "The card requires 3-D Secure authentication."
        auth.events.append({"type": "authorization", "status": auth.status, "at": time.time()})
        with self._lock:
            self._authorizations[auth.id] = auth
        delay = slow if card.authorize_slow else 0
        return Reply(402 if auth.status == "declined" else 201, auth.public(), delay)

    def get_authorization(self, auth_id: str) -> Reply:
        with self._lock:
            auth = self._authorizations.get(auth_id)
            return (
                Reply(200, auth.public()) if auth else _error(404, "resource_missing", f"No such: {auth_id}")
            )

    def list_authorizations(self, reference: str | None) -> Reply:
        with self._lock:
            found = [a.public() for a in self._authorizations.values() if reference in (None, a.reference)]
        return Reply(200, {"object": "list", "data": found})

    def capture(self, auth_id: str, body: dict[str, Any], slow: int) -> Reply:
        with self._lock:
            auth = self._authorizations.get(auth_id)
            if auth is None:
                return _error(404, "resource_missing", f"No such authorization: {auth_id}")
            if auth.status != "authorized":
                return _error(409, "invalid_state", f"Authorization is {auth.status}; it cannot be captured.")
            amount = body.get("amount", auth.amount)
            if type(amount) is not int or not 0 < amount <= auth.amount:
                return _error(
                    400, "amount_too_large", "Capture amount exceeds the authorized amount.", "amount"
                )
            card = card_for(self._vault[auth.token].number)
            if card.capture == "fail":
                auth.status, auth.message = "capture_failed", "The issuer refused the capture."
                auth.events.append({"type": "capture", "status": "failed", "at": time.time()})
                return Reply(402, auth.public())
            if card.capture == "slow_not_captured":
                # The answer comes too late and nothing was captured; a retry must really run again.
                return Reply(200, {**auth.public(), "_do_not_store": True}, slow)
            auth.status, auth.amount_captured = "captured", amount
            auth.events.append({"type": "capture", "status": "captured", "amount": amount, "at": time.time()})
            delay = slow if card.capture == "slow_captured" else 0
            return Reply(200, auth.public(), delay)

    def void(self, auth_id: str) -> Reply:
        with self._lock:
            auth = self._authorizations.get(auth_id)
            if auth is None:
                return _error(404, "resource_missing", f"No such authorization: {auth_id}")
            if card_for(self._vault[auth.token].number).void_fails:
                return _error(503, "processor_unavailable", "The void could not be processed; try later.")
            if auth.status == "voided":
                return Reply(200, auth.public())
            if auth.status not in ("authorized", "capture_failed"):
                return _error(409, "invalid_state", f"Authorization is {auth.status}; it cannot be voided.")
            auth.status = "voided"
            auth.events.append({"type": "void", "at": time.time()})
            return Reply(200, auth.public())

    def refund(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            auth = self._authorizations.get(str(body.get("authorization")))
            if auth is None:
                return _error(400, "resource_missing", "No such authorization.", "authorization")
            if auth.status != "captured":
                return _error(409, "invalid_state", f"Authorization is {auth.status}; nothing to refund.")
            amount = body.get("amount", auth.amount_captured - auth.amount_refunded)
            if type(amount) is not int or not 0 < amount <= auth.amount_captured - auth.amount_refunded:
                return _error(400, "amount_too_large", "Refund exceeds the captured amount left.", "amount")
            auth.amount_refunded += amount
            refund = {
                "id": _new_id("re"),
                "object": "refund",
                "authorization": auth.id,
                "amount": amount,
                "currency": auth.currency,
                "status": "succeeded",
                "created": int(time.time()),
            }
            self._refunds.append(refund)
            return Reply(201, dict(refund))

    def ledger(self) -> Reply:
        """The acquirer's truth: what was authorized, captured, voided and refunded (for tests)."""
        with self._lock:
            auths = [{**a.public(), "events": list(a.events)} for a in self._authorizations.values()]
            return Reply(200, {"authorizations": auths, "refunds": list(self._refunds)})


def _base_url(headers: dict[str, str]) -> str:
    """This server's URL as the caller reached it (Function URLs set X-Forwarded-Proto to https)."""
    scheme = headers.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    return f"{scheme}://{headers.get('host', '127.0.0.1')}"


def _int_header(headers: dict[str, str], name: str, default: int) -> int:
    value = headers.get(name)
    return int(value) if value and value.isdigit() else default
