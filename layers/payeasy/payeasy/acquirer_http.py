"""AcquirerClient over the acquirer's HTTP API (the simulator speaks the same API).

Failure mapping is what the workflow's Retry relies on: no answer in time -> ``AcquirerTimeout``; refused
connection or 5xx -> ``AcquirerUnavailable``; 402 -> a declined result; any other 4xx -> ``AcquirerRejected``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from payeasy.errors import AcquirerRejected, AcquirerTimeout, AcquirerUnavailable
from payeasy.money import Money
from payeasy.ports import (
    Authorization,
    CardToVault,
    Refund,
    ThreeDSAuthentication,
    ThreeDSResult,
    TokenizedCard,
)

# Told after every call: its latency in ms and the HTTP status (None: timeout or no connection).
CallObserver = Callable[[float, int | None], None]


class HttpAcquirerClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = 1.0,
        read_timeout: float = 5.0,
        session: requests.Session | None = None,
        extra_headers: dict[str, str] | None = None,
        observe: CallObserver | None = None,
    ) -> None:
        self._observe = observe
        self._base = base_url.rstrip("/")
        self._timeout = (connect_timeout, read_timeout)
        self._session = session or requests.Session()  # keep-alive across warm invocations
        self._headers = {"Authorization": f"Bearer {api_key}", **(extra_headers or {})}

    def tokenize(self, card: CardToVault, *, idempotency_key: str) -> TokenizedCard:
        body = {
            "number": card.number,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
            "cvc": card.cvc,
            "holder_name": card.holder_name,
        }
        return _token(self._call("POST", "/v1/tokens", body, idempotency_key=idempotency_key))

    def retrieve_token(self, token: str) -> TokenizedCard:
        return _token(self._call("GET", f"/v1/tokens/{token}"))

    def authorize(
        self,
        *,
        token: str,
        money: Money,
        reference: str,
        idempotency_key: str,
        three_d_secure: ThreeDSResult | None = None,
    ) -> Authorization:
        body: dict[str, Any] = {
            "token": token,
            "amount": money.amount,
            "currency": money.currency,
            "reference": reference,
        }
        if three_d_secure is not None:
            body["three_d_secure_result"] = {
                "authentication_id": three_d_secure.authentication_id,
                "eci": three_d_secure.eci,
            }
        return _authorization(self._call("POST", "/v1/authorizations", body, idempotency_key=idempotency_key))

    def create_3ds_authentication(
        self, *, token: str, money: Money, reference: str, return_url: str | None, idempotency_key: str
    ) -> ThreeDSAuthentication:
        body = {
            "token": token,
            "amount": money.amount,
            "currency": money.currency,
            "reference": reference,
            "return_url": return_url,
        }
        data = self._call("POST", "/v1/3ds/authentications", body, idempotency_key=idempotency_key)
        return _three_ds(data)

    def get_3ds_authentication(self, authentication_id: str) -> ThreeDSAuthentication:
        return _three_ds(self._call("GET", f"/v1/3ds/authentications/{authentication_id}"))

    def capture(self, authorization_id: str, *, amount: int | None, idempotency_key: str) -> Authorization:
        body = {} if amount is None else {"amount": amount}
        path = f"/v1/authorizations/{authorization_id}/capture"
        return _authorization(self._call("POST", path, body, idempotency_key=idempotency_key))

    def void(self, authorization_id: str, *, idempotency_key: str) -> Authorization:
        path = f"/v1/authorizations/{authorization_id}/void"
        return _authorization(self._call("POST", path, {}, idempotency_key=idempotency_key))

    def refund(self, authorization_id: str, *, amount: int, idempotency_key: str) -> Refund:
        body = {"authorization": authorization_id, "amount": amount}
        data = self._call("POST", "/v1/refunds", body, idempotency_key=idempotency_key)
        return Refund(
            id=data["id"],
            authorization_id=data["authorization"],
            amount=data["amount"],
            status=data["status"],
        )

    def get_authorization(self, authorization_id: str) -> Authorization:
        return _authorization(self._call("GET", f"/v1/authorizations/{authorization_id}"))

    def find_by_reference(self, reference: str) -> list[Authorization]:
        data = self._call("GET", "/v1/authorizations", params={"reference": reference})
        return [_authorization(item) for item in data["data"]]

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = dict(self._headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        started = time.perf_counter()
        try:
            response = self._session.request(
                method, self._base + path, json=body, params=params, headers=headers, timeout=self._timeout
            )
        except requests.Timeout as exc:
            self._report(started, None)
            # Covers the read timeout (request may have been processed) and the connect timeout.
            raise AcquirerTimeout(f"{method} {path}: no answer within {self._timeout[1]} s") from exc
        except requests.ConnectionError as exc:
            self._report(started, None)
            raise AcquirerUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        self._report(started, response.status_code)
        if response.status_code >= 500:
            raise AcquirerUnavailable(f"{method} {path}: HTTP {response.status_code}")
        data: dict[str, Any] = response.json()
        if response.status_code == 402 or response.ok:
            return data  # a decline or a failed capture carries its result in the body
        error = data.get("error") or {}
        raise AcquirerRejected(response.status_code, error.get("code", "unknown"), error.get("message", ""))


    def _report(self, started: float, status: int | None) -> None:
        if self._observe is not None:
            self._observe((time.perf_counter() - started) * 1000, status)


def _token(data: dict[str, Any]) -> TokenizedCard:
    return TokenizedCard(
        token=data["id"],
        brand=data["brand"],
        last4=data["last4"],
        exp_month=data["exp_month"],
        exp_year=data["exp_year"],
        bin_country=data.get("bin_country"),
        three_d_secure=data.get("three_d_secure", "not_required"),
    )


def _authorization(data: dict[str, Any]) -> Authorization:
    return Authorization(
        id=data["id"],
        status=data["status"],
        amount=data["amount"],
        currency=data["currency"],
        reference=data.get("reference", ""),
        amount_captured=data.get("amount_captured", 0),
        amount_refunded=data.get("amount_refunded", 0),
        decline_code=data.get("decline_code"),
        message=data.get("message"),
    )


def _three_ds(data: dict[str, Any]) -> ThreeDSAuthentication:
    return ThreeDSAuthentication(
        id=data["id"],
        status=data["status"],
        reference=data.get("reference", ""),
        challenge_url=data.get("challenge_url"),
        trans_status=data.get("trans_status"),
        eci=data.get("eci"),
        authentication_value_ref=data.get("authentication_value_ref"),
    )
