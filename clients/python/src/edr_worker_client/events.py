"""Building the Kafka records of the wire contract (schemas/README.md section 1).

Pure functions, no I/O: the connection key and the CloudEvents 1.0 event in
JSON structured mode.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from .errors import EdrValidationError

EVENT_NEGOTIATED = "edr.negotiated"
EVENT_RENEWED = "edr.renewed"
EVENT_EXPIRED = "edr.expired"
EVENT_TYPES = (EVENT_NEGOTIATED, EVENT_RENEWED, EVENT_EXPIRED)

CONTENT_TYPE = "application/cloudevents+json"
MAX_KEY_FIELD_BYTES = 1024
MAX_EVENT_BYTES = 1024 * 1024
TRANSFER_ID_KEY = "transferProcessId"

_KEY_FIELDS = ("counter_party_id", "counter_party_address", "query_checksum", "policy_checksum")


def check_key_fields(counter_party_id: str, counter_party_address: str,
                     query_checksum: str, policy_checksum: str) -> None:
    """Raise EdrValidationError unless the four keys are non-empty strings of at most 1024 bytes.

    A worker sends an event breaking this to the dead-letter topic, so a
    write would be lost silently; refusing it here makes the caller see it.
    """
    for name, value in zip(_KEY_FIELDS, (counter_party_id, counter_party_address,
                                         query_checksum, policy_checksum)):
        if not isinstance(value, str) or value == "":
            raise EdrValidationError(f"{name} must be a non-empty string")
        if len(value.encode("utf-8")) > MAX_KEY_FIELD_BYTES:
            raise EdrValidationError(f"{name} is longer than {MAX_KEY_FIELD_BYTES} bytes")


def connection_key(counter_party_id: str, counter_party_address: str,
                   query_checksum: str, policy_checksum: str) -> str:
    """The connection key: lowercase hex SHA-256 of the four fields joined by 0x1F."""
    joined = "\x1f".join((counter_party_id, counter_party_address, query_checksum, policy_checksum))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _now_rfc3339() -> str:
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def build_event(event_type: str, source: str, counter_party_id: str, counter_party_address: str,
                query_checksum: str, policy_checksum: str, *, edr: Mapping[str, Any] | None = None,
                transfer_process_id: str | None = None) -> dict[str, Any]:
    """Return one CloudEvents 1.0 event (as a dict) following the contract.

    ``edr`` is required for negotiated/renewed; ``transfer_process_id`` is only
    sent with expired. ``subject`` carries the transfer process id.
    """
    if event_type not in EVENT_TYPES:
        raise EdrValidationError(f"unknown event type {event_type!r}")
    if not source:
        raise EdrValidationError("source must be a non-empty string")
    check_key_fields(counter_party_id, counter_party_address, query_checksum, policy_checksum)
    data: dict[str, Any] = {
        "counter_party_id": counter_party_id,
        "counter_party_address": counter_party_address,
        "query_checksum": query_checksum,
        "policy_checksum": policy_checksum,
    }
    subject: str | None = None
    if event_type == EVENT_EXPIRED:
        if transfer_process_id is not None:
            if not isinstance(transfer_process_id, str):
                raise EdrValidationError("transfer_process_id must be a string")
            data["transfer_process_id"] = transfer_process_id
            subject = transfer_process_id
    else:
        if not isinstance(edr, Mapping):
            raise EdrValidationError("edr must be a JSON object")
        tp = edr.get(TRANSFER_ID_KEY)
        if not isinstance(tp, str) or tp == "":
            raise EdrValidationError(f"edr.{TRANSFER_ID_KEY} must be a non-empty string")
        data["edr"] = dict(edr)
        subject = tp
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": _now_rfc3339(),
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject is not None:
        event["subject"] = subject
    return event


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Serialize an event to UTF-8 JSON, refusing one over the 1 MiB contract limit."""
    try:
        value = json.dumps(event, ensure_ascii=False, separators=(",", ":"),
                           allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise EdrValidationError(f"event is not serializable as JSON: {exc}") from None
    if len(value) > MAX_EVENT_BYTES:
        raise EdrValidationError(f"event is {len(value)} bytes, more than the {MAX_EVENT_BYTES} allowed")
    return value
