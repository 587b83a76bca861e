"""Service slot leases in the catalog (SQLite and PostgreSQL): a service's limit holds
across every holder, a retried activity keeps its one slot, a dead holder's lease is
reclaimed after it expires, and an older attempt can neither renew nor free a newer one's."""

from __future__ import annotations

import threading
from datetime import timedelta

from drivers.catalog.store import Catalog
from models.catalog import utcnow
from models.services import TransferKind

B = TransferKind.BACKUP


def test_acquire_up_to_the_limit_then_refuse(catalog_url: str) -> None:
    c = Catalog(catalog_url)
    assert c.acquire_slot(B, "svc", 2, "wf-a/run/1", 1, ttl_s=30) == 0
    assert c.acquire_slot(B, "svc", 2, "wf-b/run/1", 1, ttl_s=30) == 1
    assert c.acquire_slot(B, "svc", 2, "wf-c/run/1", 1, ttl_s=30) is None
    # Another kind and another service have their own limits.
    assert c.acquire_slot(TransferKind.RESTORE, "svc", 1, "wf-c/run/1", 1, ttl_s=30) == 0
    assert c.acquire_slot(B, "other", 1, "wf-c/run/1", 1, ttl_s=30) == 0
    assert [lease.holder for lease in c.slot_leases(B, "svc")] == ["wf-a/run/1", "wf-b/run/1"]
    c.release_slot(B, "svc", "wf-a/run/1", 1)
    assert c.acquire_slot(B, "svc", 2, "wf-c/run/1", 1, ttl_s=30) == 0
    c.close()


def test_a_retry_keeps_its_slot_and_the_old_attempt_loses_it(catalog_url: str) -> None:
    c = Catalog(catalog_url)
    assert c.acquire_slot(B, "svc", 2, "wf-a/run/7", 1, ttl_s=30) == 0
    assert c.acquire_slot(B, "svc", 2, "wf-a/run/7", 1, ttl_s=30) == 0  # same attempt again: same slot
    assert c.acquire_slot(B, "svc", 2, "wf-a/run/7", 2, ttl_s=30) == 0  # the retry takes its lease over
    assert len(c.slot_leases(B, "svc")) == 1
    assert not c.renew_slot(B, "svc", "wf-a/run/7", 1, ttl_s=30)  # the old attempt cannot renew
    c.release_slot(B, "svc", "wf-a/run/7", 1)  # nor free the retry's slot
    assert [lease.attempt for lease in c.slot_leases(B, "svc")] == [2]
    assert c.acquire_slot(B, "svc", 2, "wf-a/run/7", 1, ttl_s=30) is None  # nor take it back
    assert c.renew_slot(B, "svc", "wf-a/run/7", 2, ttl_s=30)
    c.close()


def test_an_expired_lease_is_reclaimed_and_renewal_keeps_it(catalog_url: str) -> None:
    c = Catalog(catalog_url)
    t0 = utcnow()
    assert c.acquire_slot(B, "svc", 1, "dead", 1, ttl_s=10, now=t0) == 0
    assert c.acquire_slot(B, "svc", 1, "alive", 1, ttl_s=10, now=t0 + timedelta(seconds=5)) is None
    # The holder renews while it heartbeats: still held past its first expiry.
    assert c.renew_slot(B, "svc", "dead", 1, ttl_s=10, now=t0 + timedelta(seconds=8))
    assert c.acquire_slot(B, "svc", 1, "alive", 1, ttl_s=10, now=t0 + timedelta(seconds=15)) is None
    # It stops renewing (killed): after expiry the slot is taken over, and the dead holder has lost it.
    later = t0 + timedelta(seconds=19)
    assert c.slot_leases(B, "svc", now=later) == []
    assert c.acquire_slot(B, "svc", 1, "alive", 1, ttl_s=10, now=later) == 0
    assert not c.renew_slot(B, "svc", "dead", 1, ttl_s=10, now=later)
    assert [lease.holder for lease in c.slot_leases(B, "svc", now=later)] == ["alive"]
    c.close()


def test_concurrent_acquirers_never_exceed_the_limit(catalog_url: str) -> None:
    """Many threads with their own engines race for 3 slots: at most 3 win each round."""
    catalogs = [Catalog(catalog_url, upgrade=i == 0) for i in range(8)]
    won: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(catalogs))

    def race(i: int) -> None:
        start.wait()
        for _ in range(20):  # retry like a waiting activity does
            if catalogs[i].acquire_slot(B, "svc", 3, f"holder-{i}", 1, ttl_s=30) is not None:
                with lock:
                    won.append(f"holder-{i}")
                return

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(catalogs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    leases = catalogs[0].slot_leases(B, "svc")
    assert len(won) == 3 and sorted(lease.holder for lease in leases) == sorted(won)
    assert sorted(lease.slot for lease in leases) == [0, 1, 2]
    for c in catalogs:
        c.close()
