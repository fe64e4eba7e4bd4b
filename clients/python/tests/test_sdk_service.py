"""The adapter under the SDK's own code: ConnectorConsumerService (jupiter and saturn).

Two connector replicas, each a ConnectorConsumerService built by the SDK's
ServiceFactory with its own adapter instance, talk to a local stand-in for the
EDC management API (fake_edc.py) and share one edr-worker. Counted at the
stand-in: negotiations (POST /v3/edrs), EDR token fetches, data calls.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_edc import FakeEdc, offer_policy
from tractusx_sdk.dataspace.managers.connection.memory import MemoryConnectionManager
from tractusx_sdk.dataspace.services.connector.service_factory import ServiceFactory

API_KEY = "fake-management-key"
log = logging.getLogger("test_sdk_service")


@pytest.fixture
def edc() -> Iterator[FakeEdc]:
    bpn = f"BPNL{uuid.uuid4().hex[:12].upper()}"
    fake = FakeEdc(api_key=API_KEY, provider_id=bpn,
                   asset_id=f"urn:uuid:{uuid.uuid4()}").start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(params=["jupiter", "saturn"])
def version(request: pytest.FixtureRequest) -> str:
    """The SDK's dataspace versions: DSP 0.8 and DSP 2025-1."""
    return request.param


def consumer_service(edc: FakeEdc, manager: Any, version: str) -> Any:
    """A connector replica as SDK users build one (logger given, so the SDK logs)."""
    return ServiceFactory.get_connector_consumer_service(
        dataspace_version=version, base_url=edc.base_url, dma_path="/management",
        headers={"X-Api-Key": API_KEY}, connection_manager=manager, verbose=False,
        logger=log)


def request_args(edc: FakeEdc, version: str, party: str | None = None) -> dict[str, Any]:
    return dict(counter_party_id=party or edc.provider_id,
                counter_party_address=edc.dsp_address,
                filter_expression=[{"operandLeft": "https://w3id.org/edc/v0.0.1/ns/id",
                                    "operator": "=", "operandRight": edc.asset_id}],
                # An explicit allow-list: with policies=None and a logger the SDK
                # uses a random policy checksum, i.e. never hits its own cache.
                policies=[offer_policy(saturn=version == "saturn")], max_wait=10,
                poll_interval=1)


def sdk_checksums(args: dict[str, Any]) -> tuple[str, str]:
    """query and policy checksums exactly as BaseConnectorConsumerService computes them."""
    query = hashlib.sha3_256(str(args["filter_expression"]).encode("utf-8")).hexdigest()
    policy = hashlib.sha3_256(str(args["policies"]).encode("utf-8")).hexdigest()
    return query, policy


def sdk_keys(args: dict[str, Any]) -> tuple[str, str, str, str]:
    return (args["counter_party_id"], args["counter_party_address"], *sdk_checksums(args))


def test_the_stand_in_serves_the_sdks_own_memory_manager(edc: FakeEdc, version: str) -> None:
    """The same flow with the SDK's MemoryConnectionManager: the stand-in is what the SDK expects."""
    manager = MemoryConnectionManager()
    service = consumer_service(edc, manager, version)
    args = request_args(edc, version)
    tp = service.get_transfer_id(**args)
    assert edc.negotiations == 1 and not edc.errors, edc.errors
    assert tp == manager.get_connection_transfer_id(*sdk_keys(args))
    assert service.get_transfer_id(**args) == tp
    response = service.do_get(path="/parts", **args)
    assert response.status_code == 200, response.text
    assert response.json()["transferProcessId"] == tp
    assert edc.negotiations == 1


@pytest.mark.integration
def test_consumer_service_replicas_share_one_cache(edc: FakeEdc, version: str,
                                                   make_manager: Callable[..., Any],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # Built with SDK-manager arguments, as code written for those builds them.
    manager_a = make_manager(provider_id_key="providerId", edrs_key="edrs", logger=log,
                             verbose=True)
    manager_b = make_manager(provider_id_key="providerId", logger=log)
    replica_a = consumer_service(edc, manager_a, version)
    replica_b = consumer_service(edc, manager_b, version)
    did = f"did:web:wallet.example.com:{edc.provider_id}"
    args = request_args(edc, version, party=did)
    keys = sdk_keys(args)
    caplog.set_level("DEBUG")

    # 1. Replica A misses, negotiates once, caches the EDR entry.
    tp1 = replica_a.get_transfer_id(**args)
    assert edc.negotiations == 1, edc.errors
    assert tp1 in edc.by_transfer
    stored = manager_b.get_connection(*keys)
    assert stored["transferProcessId"] == tp1
    assert stored["contractNegotiationId"] == edc.by_transfer[tp1].negotiation_id
    assert not {"@type", "@context", "providerId"} & stored.keys()

    # 2. Replica B: cache hit through the other adapter; fetches the token and the data.
    assert replica_b.get_transfer_id(**args) == tp1
    response = replica_b.do_get(path="/serial-parts/1", **args)
    assert response.status_code == 200, response.text
    assert response.json() == {"assetId": edc.asset_id, "path": "/serial-parts/1",
                               "transferProcessId": tp1}
    assert edc.negotiations == 1
    assert edc.transfer_ids_served == [tp1] and edc.data_requests == 1
    assert replica_a.get_transfer_id(**args) == tp1 and edc.negotiations == 1

    # The SDK-shaped snapshot holds the entry where the SDK's managers keep it.
    snapshot = manager_a.open_connections
    assert snapshot[did][edc.dsp_address][keys[2]][keys[3]] == stored

    # 3. Eviction by one replica (delete_connection) -> the other negotiates again.
    assert manager_b.delete_connection(*keys) is True
    tp2 = replica_a.get_transfer_id(**args)
    assert edc.negotiations == 2 and tp2 != tp1
    assert replica_b.get_transfer_id(**args) == tp2 and edc.negotiations == 2

    # 4. Eviction by BPN (clear_connections_by_party) clears the DID-keyed entry.
    assert manager_a.clear_connections_by_party(edc.provider_id) == 1
    assert manager_b.get_connection_transfer_id(*keys) is None
    tp3 = replica_b.get_transfer_id(**args)
    assert edc.negotiations == 3 and tp3 not in (tp1, tp2)
    assert replica_a.get_transfer_id(**args) == tp3 and edc.negotiations == 3

    # 5. Shutdown as the SDK's managers are shut down; a second stop is harmless.
    manager_a.stop()
    manager_b.stop()
    manager_a.stop()
    assert manager_a.pending_writes == 0 and manager_b.pending_writes == 0
    assert replica_a.get_transfer_id(**args) == tp3  # still usable after stop()
    assert edc.negotiations == 3 and edc.catalog_requests == 3
    assert not edc.errors, edc.errors
    for transfer in edc.by_transfer.values():  # tokens never reach the logs
        assert transfer.token not in caplog.text
