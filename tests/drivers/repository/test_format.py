"""On-disk format: config and versioning, chunk file layout, manifest shape, staging journal,
flush modes, and optional encryption."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest

from drivers.repository import (
    Repository,
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    SyncMode,
    UnsupportedFormat,
)
from drivers.repository.chunks import HEADER, MAGIC
from drivers.repository.journal import Journal, read_entries
from drivers.repository.manifest import DiskStats
from tests.drivers.repository.conftest import CS, KiB, MiB, backup, make_content, restore_bytes, vm_config


def test_config_and_layout(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r", chunk_size=256 * KiB, compression_level=3)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["format"] == "abdr-repository" and cfg["version"] == 1
    assert cfg["chunk_size"] == 256 * KiB and cfg["hash"] == "blake3" and cfg["compression"] == "zstd"
    assert cfg["sync"] == "syncfs" and cfg["encryption"] is None
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(
        ["config.json", "chunks", "points", "staging", "leases", "locks", "gc", "verify"])
    assert len(list((tmp_path / "r" / "chunks").iterdir())) == 256
    assert Repository.open(tmp_path / "r").config == repo.config
    with pytest.raises(RepositoryExists):
        Repository.init(tmp_path / "r")


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match="no repository at"):
        Repository.open(tmp_path / "nothing")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(RepositoryError, match="non-empty directory"):
        Repository.init(tmp_path / "busy")
    Repository.init(tmp_path / "r")
    cfg = tmp_path / "r" / "config.json"
    raw = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**raw, "version": 99}))
    with pytest.raises(UnsupportedFormat, match="format version 99; this abdr reads up to version 1"):
        Repository.open(tmp_path / "r")


@pytest.mark.parametrize("bad", [32 * KiB, 96 * KiB, 3 * 64 * KiB, 32 * MiB])
def test_chunk_size_must_be_power_of_two_multiple_of_64k(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="must be a power of two from 65536"):
        Repository.init(tmp_path / "r", chunk_size=bad)


def test_chunk_file_and_manifest_shape(repo: Repository, disks) -> None:
    size = 4 * CS
    content = b"A" * CS + bytes(CS) + bytes(range(256)) * (CS // 256) + b"A" * CS
    d = disks("d", size, content)
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    digest = blake3.blake3(b"A" * CS).digest()
    path = repo.layout.chunks / digest.hex()[:2] / digest.hex()
    blob = path.read_bytes()
    magic, version, flags, _, raw_len, plen = HEADER.unpack_from(blob)
    assert (magic, version, raw_len, len(blob)) == (MAGIC, 1, CS, HEADER.size + plen)
    m = json.loads(repo.layout.point(p.id).read_text())
    assert set(m) >= {"version", "id", "vm_id", "vm_name", "vm_config", "created_at", "type", "creation", "plan",
                      "base_point", "labels", "disks"}
    disk = m["disks"][0]
    assert (disk["name"], disk["size"], disk["chunk_size"]) == ("disk0", size, CS)
    entries = list(p.disks[0].chunks)
    assert entries[0] == digest and entries[1] is None and entries[3] == digest


def test_journal_drops_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "j"
    header = {"disk": "d", "size": 4 * CS}
    j = Journal(path, header)
    j.append(b"\x01" * 64, DiskStats(read_bytes=2), fsync=False)
    j.append(b"\x02" * 32, DiskStats(read_bytes=3), fsync=False)
    j.close()
    full = path.read_bytes()
    for cut in (1, 20, 31):  # a torn last batch
        path.write_bytes(full[:-cut])
        j = Journal(path, header)
        assert j.next_index == 2 and j.stats.read_bytes == 2
        j.close()
    path.write_bytes(full[:-32] + b"\x00" * 32)  # zero-filled tail, as after a power loss
    j = Journal(path, header)
    assert bytes(j.entries) == b"\x01" * 64
    j.close()
    assert read_entries(path) == b"\x01" * 64
    assert Journal(path, {"disk": "other"}).next_index == 0  # another job's journal is discarded


@pytest.mark.parametrize("sync", [SyncMode.SYNCFS, SyncMode.FSYNC])
def test_flush_modes_produce_the_same_repository(tmp_path: Path, disks, sync: SyncMode) -> None:
    size = 1 * MiB
    d = disks("d", size, make_content(size, 80))
    repo = Repository.init(tmp_path / "r", chunk_size=CS, sync=sync)
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    assert restore_bytes(repo, p.id, "disk0", tmp_path) == d.content()
    assert repo.verify().ok


def test_stats(repo: Repository, disks) -> None:
    size = 1 * MiB
    d = disks("d", size, make_content(size, 81))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    st = repo.stats()
    assert st.chunk_count == len(p.digests()) and st.stored_bytes == p.new_bytes
    assert st.points[0].id == p.id and st.points[0].logical_bytes == size
    assert st.points[0].zero_chunks == p.disks[0].stats.zero_chunks
    assert st.fs_total_bytes > st.fs_free_bytes > 0 and st.fs_used_bytes > 0


def test_encrypted_repository(tmp_path: Path, disks) -> None:
    import cryptography  # noqa: F401  (a dependency: encryption must be tested, never skipped)

    from drivers.repository import EncryptionError, RepoKey

    key = RepoKey.generate()
    key.save(tmp_path / "repo.key")
    repo = Repository.init(tmp_path / "r", chunk_size=CS, sync=SyncMode.NONE, key=key)
    size = 512 * KiB
    content = b"secret!!" * (size // 8)
    d = disks("d", size, content)
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    # Names are keyed digests; neither chunks nor the manifest show the plaintext.
    plain = blake3.blake3(content[:CS]).digest()
    assert not (repo.layout.chunks / plain.hex()[:2] / plain.hex()).exists()
    for e in repo.store.iter_files():
        assert b"secret!!" not in Path(e.path).read_bytes()
    assert b"vm1" not in repo.layout.point(p.id).read_bytes()
    again = Repository.open(tmp_path / "r", key=tmp_path / "repo.key")
    assert restore_bytes(again, p.id, "disk0", tmp_path) == content
    assert again.verify().ok
    with pytest.raises(EncryptionError, match="is encrypted .* its key is not"):
        Repository.open(tmp_path / "r")
    with pytest.raises(EncryptionError, match="does not belong"):
        Repository.open(tmp_path / "r", key=RepoKey.generate())
    # Tampering is detected as corruption.
    f = next(Path(e.path) for e in repo.store.iter_files())
    blob = bytearray(f.read_bytes())
    blob[-1] ^= 1
    f.write_bytes(bytes(blob))
    assert not again.verify().ok
