"""Eviction on every replica: by asset, asset family and transfer id (issue 17, part 3).

Each method lists the matching entries (``list_connections`` with the v2
filters) and publishes one keyed ``edr.expired`` per entry with the entry's
transfer process id; it returns how many entries it evicted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Keys, edr_entry
from edr_worker_client import EdrValidationError

pytestmark = pytest.mark.integration


def _put(manager: Any, asset: str, party: str | None = None) -> tuple[Keys, str]:
    k = Keys(party=party)
    tp = manager.add_connection(*k.args(), edr_entry(assetId=asset))
    return k, tp


def test_delete_by_asset_id_prefix_and_both(make_manager: Callable[..., Any]) -> None:
    manager, other = make_manager(), make_manager()  # two replicas
    tag = uuid.uuid4().hex
    one = f"urn:uuid:{tag}-one"
    family = f"urn:cx:{tag}:family:"
    k1, _ = _put(manager, one)
    k2, _ = _put(manager, family + "1")
    k3, _ = _put(manager, family + "2", party=f"BPNL{tag[:12].upper()}")
    k4, tp4 = _put(manager, f"urn:cx:{tag}:other")

    assert other.delete_connections_by_asset(asset_id=one) == 1
    assert manager.get_connection(*k1.args()) == {}
    assert other.delete_connections_by_asset(asset_id=one) == 0  # nothing left to evict

    # both filters must hold: the family's id prefix and an id outside it
    assert other.delete_connections_by_asset(asset_id=f"urn:cx:{tag}:other",
                                             asset_id_prefix=family) == 0
    assert manager.delete_connections_by_asset(asset_id_prefix=family) == 2
    assert other.get_connection(*k2.args()) == {} and other.get_connection(*k3.args()) == {}
    assert other.get_connection_transfer_id(*k4.args()) == tp4  # not matched, still there
    assert other.delete_connections_by_asset(asset_id=f"urn:cx:{tag}:other",
                                             asset_id_prefix=f"urn:cx:{tag}:") == 1
    assert manager.get_connection(*k4.args()) == {}


@pytest.mark.parametrize("kwargs", [{}, {"asset_id": ""}, {"asset_id_prefix": ""},
                                    {"asset_id": 7}, {"asset_id_prefix": None}])
def test_delete_by_asset_needs_a_filter(manager: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(EdrValidationError):
        manager.delete_connections_by_asset(**kwargs)


def test_delete_by_transfer_id(make_manager: Callable[..., Any]) -> None:
    manager, other = make_manager(), make_manager()
    tag = uuid.uuid4().hex
    k1, tp1 = _put(manager, f"urn:uuid:{tag}-a")
    k2, tp2 = _put(manager, f"urn:uuid:{tag}-b")
    assert other.delete_connection_by_transfer_id(tp1) == 1
    assert manager.get_connection(*k1.args()) == {}
    assert manager.get_connection_transfer_id(*k2.args()) == tp2
    assert other.delete_connection_by_transfer_id(tp1) == 0
    assert other.delete_connection_by_transfer_id(f"tp-{uuid.uuid4()}") == 0
    for bad in ("", None, 3):
        with pytest.raises(EdrValidationError):
            manager.delete_connection_by_transfer_id(bad)


def test_entry_renewed_after_the_listing_survives(make_manager: Callable[..., Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The race made deterministic: another replica renews the entry (new
    transfer id) right after the evicting replica listed it."""
    manager, other = make_manager(), make_manager()
    tag = uuid.uuid4().hex
    asset = f"urn:uuid:{tag}"
    k1, _ = _put(manager, asset)
    k2, _ = _put(manager, asset)
    renewed = f"tp-{uuid.uuid4()}"
    real = manager.rpc.iter_connections
    calls: list[int] = []

    def list_then_renew(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        items = real(*args, **kwargs)
        if not calls:
            calls.append(1)
            other.renew_connection(*k1.args(), edr_entry(renewed, assetId=asset))
        return items

    monkeypatch.setattr(manager.rpc, "iter_connections", list_then_renew)
    assert manager.delete_connections_by_asset(asset_id=asset) == 2  # both listed and expired
    assert calls == [1]
    assert other.get_connection(*k2.args()) == {}
    assert other.get_connection_transfer_id(*k1.args()) == renewed  # the renewal survived
    monkeypatch.setattr(manager.rpc, "iter_connections", real)
    assert manager.delete_connection_by_transfer_id(renewed) == 1
    assert other.get_connection(*k1.args()) == {}
