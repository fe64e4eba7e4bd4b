"""A local stand-in for an EDC connector's management API (and its data plane).

It answers the ``/v3`` calls the Tractus-X SDK's ``ConnectorConsumerService``
(jupiter, DSP 0.8; saturn, DSP 2025-1: its catalog then uses bare terms) makes on its way from a catalog to data, with the
JSON shapes Tractus-X EDC returns (compacted with ``@vocab`` = the EDC
namespace, as the management API answers):

| call | answer |
|---|---|
| ``POST /v3/catalog/request`` | ``dcat:Catalog`` with one ``dcat:Dataset`` and its ``odrl:Offer`` |
| ``POST /v3/edrs`` (a negotiation) | ``IdResponse`` with the negotiation id; counted in ``negotiations`` |
| ``GET /v3/contractnegotiations/{id}/state`` | ``NegotiationState`` ``FINALIZED`` (``REQUESTED`` for ever for the first ``stall_negotiations``) |
| ``GET /v3/contractnegotiations/{id}`` | ``ContractNegotiation`` with ``contractAgreementId`` |
| ``POST /v3/transferprocesses/request`` | ``[TransferProcess]`` in state ``STARTED``; a filter on ``contractAgreementId`` is refused with 400 as EDC's SQL store refuses an unknown property, ``contractId`` works |
| ``POST /v3/edrs/request`` | ``[EndpointDataReferenceEntry]`` of the negotiation |
| ``GET /v3/edrs/{tp}/dataaddress`` | the ``DataAddress`` with ``endpoint`` and the bearer ``authorization`` |
| ``GET /public/...`` | the data plane: 200 with JSON when the bearer token is the transfer's |

Every negotiation makes a new agreement, transfer process and token. Requests
without the management API key get 401, unknown paths 404, bodies that are
not what the SDK sends 400, so the SDK-level test fails if the SDK and this
stand-in disagree.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

EDC_NS = "https://w3id.org/edc/v0.0.1/ns/"
CONTEXT = {
    "@vocab": EDC_NS,
    "edc": EDC_NS,
    "tx": "https://w3id.org/tractusx/v0.0.1/ns/",
    "tx-auth": "https://w3id.org/tractusx/auth/",
    "cx-policy": "https://w3id.org/catenax/policy/",
    "odrl": "http://www.w3.org/ns/odrl/2/",
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "dspace": "https://w3id.org/dspace/v0.8/",
}
API_KEY_HEADER = "X-Api-Key"


DSP_2025 = "dataspace-protocol-http:2025-1"


def offer_policy(saturn: bool = False) -> dict[str, Any]:
    """The usage policy the provider offers (without the offer's @id/@type).

    The SDK compares a caller's allow-list with it after dropping @id/@type.
    Jupiter (DSP 0.8) catalogs carry prefixed terms, Saturn (DSP 2025-1)
    catalogs the Catena-X 2025-9 context's bare ones.
    """
    if saturn:
        return {
            "permission": [{
                "action": "use",
                "constraint": {"and": [
                    {"leftOperand": "FrameworkAgreement", "operator": "eq",
                     "rightOperand": "DataExchangeGovernance:1.0"},
                    {"leftOperand": "UsagePurpose", "operator": "isAnyOf",
                     "rightOperand": "cx.core.industrycore:1"},
                ]},
            }],
            "prohibition": [],
            "obligation": [],
        }
    return {
        "odrl:permission": {
            "odrl:action": {"@id": "odrl:use"},
            "odrl:constraint": {
                "odrl:and": [
                    {"odrl:leftOperand": {"@id": "cx-policy:FrameworkAgreement"},
                     "odrl:operator": {"@id": "odrl:eq"}, "odrl:rightOperand": "DataExchangeGovernance:1.0"},
                    {"odrl:leftOperand": {"@id": "cx-policy:UsagePurpose"},
                     "odrl:operator": {"@id": "odrl:eq"}, "odrl:rightOperand": "cx.core.industrycore:1"},
                ]
            },
        },
        "odrl:prohibition": [],
        "odrl:obligation": [],
    }


def _id_of(value: Any) -> Any:
    """Jupiter sends ``"target": "x"``, Saturn ``"target": {"@id": "x"}``."""
    return value.get("@id") if isinstance(value, dict) else value


@dataclass
class Transfer:
    negotiation_id: str
    agreement_id: str
    transfer_id: str
    asset_id: str
    provider_id: str
    token: str
    created_at: int


@dataclass
class FakeEdc:
    """State and counters of the stand-in (read them from the test thread)."""

    api_key: str
    provider_id: str
    asset_id: str
    base_url: str = ""
    negotiations: int = 0
    #: the first this many negotiations never finalize (state REQUESTED): a
    #: consumer is then stuck mid-negotiation, e.g. to be killed there
    stall_negotiations: int = 0
    stalled: set[str] = field(default_factory=set)
    catalog_requests: int = 0
    data_address_requests: int = 0
    data_requests: int = 0
    transfer_ids_served: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    by_negotiation: dict[str, Transfer] = field(default_factory=dict)
    by_agreement: dict[str, Transfer] = field(default_factory=dict)
    by_transfer: dict[str, Transfer] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------

    def start(self) -> FakeEdc:
        handler = type("Handler", (_Handler,), {"edc": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def dsp_address(self) -> str:
        """The provider's DSP address (only used as a key by the consumer)."""
        return f"{self.base_url}/provider/api/v1/dsp"

    # -- the answers ----------------------------------------------------------

    def catalog(self, request: dict[str, Any]) -> tuple[int, Any]:
        if request.get("@type") != "CatalogRequest" or not request.get("counterPartyAddress"):
            return 400, _error(f"not a CatalogRequest: {sorted(request)}")
        with self.lock:
            self.catalog_requests += 1
        if request.get("protocol") == DSP_2025:
            offer = {"@id": f"offer:{uuid.uuid4()}", "@type": "Offer", **offer_policy(True)}
            return 200, {
                "@id": str(uuid.uuid4()), "@type": "Catalog", "participantId": self.provider_id,
                "dataset": [{"@id": self.asset_id, "@type": "Dataset", "hasPolicy": [offer],
                             "distribution": [], "id": self.asset_id}],
                "service": [{"@id": str(uuid.uuid4()), "@type": "DataService"}],
                "@context": ["https://w3id.org/catenax/2025/9/policy/context.jsonld",
                             "https://w3id.org/dspace/2025/1/context.jsonld", {"@vocab": EDC_NS}],
            }
        offer = {"@id": f"offer:{uuid.uuid4()}", "@type": "odrl:Offer", **offer_policy()}
        return 200, {
            "@id": str(uuid.uuid4()),
            "@type": "dcat:Catalog",
            "dspace:participantId": self.provider_id,
            "dcat:dataset": {
                "@id": self.asset_id,
                "@type": "dcat:Dataset",
                "odrl:hasPolicy": offer,
                "dcat:distribution": [],
                "id": self.asset_id,
            },
            "dcat:service": {"@id": str(uuid.uuid4()), "@type": "dcat:DataService"},
            "@context": CONTEXT,
        }

    def negotiate(self, request: dict[str, Any]) -> tuple[int, Any]:
        policy = request.get("policy") or {}
        assigner = _id_of(policy.get("assigner"))
        # The provider is known by its BPN and by a DID that ends with it.
        known = assigner == self.provider_id or (
            isinstance(assigner, str) and assigner.startswith("did:")
            and assigner.endswith(":" + self.provider_id))
        if request.get("@type") != "ContractRequest" or _id_of(policy.get("target")) != self.asset_id \
                or not known or "@id" not in policy:
            return 400, _error("not a ContractRequest for the offered asset")
        t = Transfer(negotiation_id=str(uuid.uuid4()), agreement_id=str(uuid.uuid4()),
                     transfer_id=str(uuid.uuid4()), asset_id=self.asset_id,
                     provider_id=self.provider_id, token=f"eyJ.fake.{uuid.uuid4().hex}",
                     created_at=int(time.time() * 1000))
        with self.lock:
            self.negotiations += 1
            if self.negotiations <= self.stall_negotiations:
                self.stalled.add(t.negotiation_id)
            self.by_negotiation[t.negotiation_id] = t
            self.by_agreement[t.agreement_id] = t
            self.by_transfer[t.transfer_id] = t
        return 200, {"@type": "IdResponse", "@id": t.negotiation_id,
                     "createdAt": t.created_at, "@context": CONTEXT}

    def negotiation_state(self, negotiation_id: str) -> tuple[int, Any]:
        if negotiation_id not in self.by_negotiation:
            return 404, _error("no such negotiation")
        state = "REQUESTED" if negotiation_id in self.stalled else "FINALIZED"
        return 200, {"@type": "NegotiationState", "state": state, "@context": CONTEXT}

    def negotiation(self, negotiation_id: str) -> tuple[int, Any]:
        t = self.by_negotiation.get(negotiation_id)
        if t is None:
            return 404, _error("no such negotiation")
        return 200, {"@type": "ContractNegotiation", "@id": t.negotiation_id, "type": "CONSUMER",
                     "protocol": "dataspace-protocol-http", "state": "FINALIZED",
                     "counterPartyId": t.provider_id, "counterPartyAddress": self.dsp_address,
                     "callbackAddresses": [], "createdAt": t.created_at,
                     "contractAgreementId": t.agreement_id, "@context": CONTEXT}

    def transfer_processes(self, request: dict[str, Any]) -> tuple[int, Any]:
        left, right = _single_filter(request)
        if left != "contractId":
            # EDC's SQL store: a TransferProcess has no property of that name.
            return 400, [{"message": f"Translation failed for Model '{left}'",
                          "type": "InvalidRequest", "path": None, "invalidValue": None}]
        t = self.by_agreement.get(right)
        if t is None:
            return 200, []
        return 200, [{"@id": t.transfer_id, "@type": "TransferProcess",
                      "correlationId": str(uuid.uuid4()), "state": "STARTED",
                      "stateTimestamp": t.created_at, "type": "CONSUMER", "assetId": t.asset_id,
                      "contractId": t.agreement_id, "callbackAddresses": [],
                      "transferType": "HttpData-PULL", "@context": CONTEXT}]

    def edr_entries(self, request: dict[str, Any]) -> tuple[int, Any]:
        left, right = _single_filter(request)
        if left != "contractNegotiationId":
            return 400, _error(f"unexpected EDR filter {left!r}")
        t = self.by_negotiation.get(right)
        if t is None:
            return 200, []
        return 200, [{"@id": t.transfer_id, "@type": "EndpointDataReferenceEntry",
                      "providerId": t.provider_id, "assetId": t.asset_id,
                      "agreementId": t.agreement_id, "transferProcessId": t.transfer_id,
                      "createdAt": t.created_at, "contractNegotiationId": t.negotiation_id,
                      "@context": CONTEXT}]

    def data_address(self, transfer_id: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        t = self.by_transfer.get(transfer_id)
        if t is None:
            return 404, _error("no EDR for that transfer process")
        with self.lock:
            self.data_address_requests += 1
            self.transfer_ids_served.append(transfer_id)
        if query.get("auto_refresh") != ["True"] and query.get("auto_refresh") != ["true"]:
            self.errors.append(f"dataaddress without auto_refresh: {query}")
        return 200, {"@type": "DataAddress", "type": "https://w3id.org/idsa/v4.1/HTTP",
                     "endpoint": f"{self.base_url}/public", "authType": "bearer",
                     "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
                     "authorization": t.token, "tx-auth:refreshToken": f"refresh-{t.token}",
                     "tx-auth:expiresIn": "300",
                     "tx-auth:refreshEndpoint": f"{self.base_url}/public/token",
                     "tx-auth:refreshAudience": "did:web:consumer", "@context": CONTEXT}

    def data(self, authorization: str | None, path: str) -> tuple[int, Any]:
        match = next((t for t in self.by_transfer.values() if t.token == authorization), None)
        if match is None:
            return 401, _error("bad or missing token")
        with self.lock:
            self.data_requests += 1
        return 200, {"assetId": match.asset_id, "path": path, "transferProcessId": match.transfer_id}


def _error(message: str) -> list[dict[str, Any]]:
    return [{"message": message, "type": "InvalidRequest"}]


def _single_filter(request: dict[str, Any]) -> tuple[str | None, str | None]:
    filters = request.get("filterExpression") or []
    if request.get("@type") != "QuerySpec" or len(filters) != 1:
        return None, None
    f = filters[0]
    if f.get("operator") != "=":
        return None, None
    return f.get("operandLeft"), f.get("operandRight")


class _Handler(BaseHTTPRequestHandler):
    edc: FakeEdc
    MANAGEMENT = "/management"

    def log_message(self, *_args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _route(self, method: str) -> tuple[int, Any]:
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/public"):
            return self.edc.data(self.headers.get("Authorization"), path[len("/public"):] or "/")
        if not path.startswith(self.MANAGEMENT + "/v3/"):
            return 404, _error(f"unknown path {path}")
        if self.headers.get(API_KEY_HEADER) != self.edc.api_key:
            return 401, _error("missing or wrong API key")
        parts = path[len(self.MANAGEMENT) + len("/v3/"):].split("/")
        if method == "POST":
            if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                return 415, _error("the management API speaks JSON")
            body = self._body()
            if body is None:
                return 400, _error("body is not a JSON object")
            if parts == ["catalog", "request"]:
                return self.edc.catalog(body)
            if parts == ["edrs"]:
                return self.edc.negotiate(body)
            if parts == ["edrs", "request"]:
                return self.edc.edr_entries(body)
            if parts == ["transferprocesses", "request"]:
                return self.edc.transfer_processes(body)
        elif method == "GET":
            if len(parts) == 3 and parts[0] == "contractnegotiations" and parts[2] == "state":
                return self.edc.negotiation_state(parts[1])
            if len(parts) == 2 and parts[0] == "contractnegotiations":
                return self.edc.negotiation(parts[1])
            if len(parts) == 3 and parts[0] == "edrs" and parts[2] == "dataaddress":
                return self.edc.data_address(parts[1], parse_qs(url.query))
        return 404, _error(f"unknown {method} {path}")

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        status, body = self._route("GET")
        if status >= 400 and not self.path.startswith("/public"):
            self.edc.errors.append(f"GET {self.path} -> {status}")
        self._send(status, body)

    def do_POST(self) -> None:  # noqa: N802
        status, body = self._route("POST")
        if status >= 400 and not self.path.endswith("/transferprocesses/request"):
            self.edc.errors.append(f"POST {self.path} -> {status}")
        self._send(status, body)
