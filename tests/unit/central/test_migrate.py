"""``nii cir migrate``: an embedded CIR (SQLite + files) copied into a national one (a
real PostgreSQL server and a real SeaweedFS object store of our own, on loopback).

After the copy ``nii cir verify`` and ``nii cir export`` say the same on both; a run cut
short carries on without duplicating; a target holding other data, a target that is the
source, a table the migration does not know and a bad URL are each one clear error.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from central._blobs import BlobStore, open_blob_store
from central._cir import Cir
from central._ingest import Ingest, Work
from central._migrate import INTERNAL, TABLES, MigrationConflict, copy_cir
from central._reader import verify_stream
from central._sql import Sql, migrate
from core.errors import StorageError
from core.keys import CirKey, EdgePublic
from core.messages import BlockMsg
from core.seal import BlockKind, Opener
from tests.unit.central._chain import EDGE, IDENT, SCANNER, Rig

SCANS = 3


def _data(r: Rig, scan_id: int, line_nos: list[int]) -> tuple[int, bytes]:
    """A data block of random lines (so two CIRs built alike still differ)."""
    index = []
    for n in line_nos:
        r.link += 1
        index.append((n, 0, 1, r.link))
    return r.seal(
        BlockKind.DATA,
        {"kind": "data", "scan_id": scan_id, "channels": 8},
        index,
        os.urandom(len(line_nos) * 8 * 4),
    )


def embedded_cir(state: Path) -> Rig:
    """An embedded CIR in ``state/cir`` with a key and a ``central.toml`` in ``state``:
    SCANS complete scans of the Rig's edge, a gap, an alarm, a calibration, and the live
    ATR's tables (verdicts, an ATT result, confirmations with a correction, profiles)."""
    from central.atr._store import AttStore, LibraryStore, VerdictStore

    r = Rig()
    cir = Cir(state / "cir")
    try:
        cir.enroll(EdgePublic(EDGE, r.sign.public_key(), b"0" * 40))
        ingest = Ingest(cir, Opener(r.cir).open, r._alarm)

        def send(seq_raw: tuple[int, bytes], **kw: Any) -> None:
            seq, raw = seq_raw
            work = Work()
            ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
            scans = {k: ingest.scans[k] for k in work.scans}
            cir.commit(work.staged, ingest.streams, scans, kw.pop("alarms", []), **kw)
            ingest.committed(work)

        for sid in range(1, SCANS + 1):
            send(r.start(sid, lines=4))
            send(_data(r, sid, [0, 1]))
            send(_data(r, sid, [2, 3]))
            send(
                r.end(sid),
                alarms=[cir.alarm_row(SCANNER, EDGE, "test", f"scan {sid} ended")],
                calibrations=[
                    {"scanner": SCANNER, "sha256": "ab" * 32, "document": "{}",
                     "seen_ns": 1000 + sid, "ref": sid}
                ],
            )  # fmt: skip
        send(r.gap(None, cause="lost"))
        target = cir.sql.target
    finally:
        cir.close()
    v = VerdictStore(target)
    v.put({"ref": 1, "scanner": SCANNER, "verdict": "red", "findings": [{}]})
    v.close()
    a = AttStore(target)
    a.put({"ref_b": 2, "ref_a": 1, "result": "consistent: release", "hold": False})
    a.close()
    lib = LibraryStore(target)
    row = {"ref": 1, "verdict": "green", "atr_verdict": "red", "by": "ana",
           "created_ns": 1, "note": "", "corrects": None, "heading": "6907"}  # fmt: skip
    first = lib.add_confirmation(row)
    lib.add_confirmation({**row, "verdict": "red", "corrects": first})
    lib.put_profiles([{"heading": "6907", "n": 3, "used": False}], 5)
    lib.close()
    CirKey(r.cir, *reversed(zmq.curve_keypair())).save(state / "keys")
    _config(state / "central.toml")
    return r


def _config(path: Path, **settings: str) -> Path:
    lines = ["[central]", 'key = "keys/cir.key"', 'state_dir = "cir"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _national(s3: Any, tmp_path: Path, pg: str) -> tuple[list[str], Path]:
    """The migrate options for ``pg`` and a fresh prefix of the test bucket, and a
    ``national.toml`` that names the same."""
    blobs = f"s3://{s3.extra['bucket']}/m-{tmp_path.name}"
    creds = str(s3.extra["credentials"])
    opts = ["--to", pg, "--blobs", blobs, "--s3-endpoint", s3.url, "--s3-credentials", creds]
    cfg = _config(
        tmp_path / "national.toml", cir=pg, blobs=blobs, s3_endpoint=s3.url, s3_credentials=creds
    )
    return opts, cfg


def _rows(db: Sql, table: str) -> list[dict[str, Any]]:
    key = TABLES[table]
    assert key is not None
    return db.rows(f"SELECT * FROM {table} ORDER BY {', '.join(key.key)}")


def _same_rows(source: Path, pg: str) -> None:
    a, b = Sql(source), Sql(pg)
    try:
        for table, spec in TABLES.items():
            if spec is not None:
                assert _rows(a, table) == _rows(b, table), table
    finally:
        a.close()
        b.close()


def test_the_tables_known_to_the_migration_are_those_the_schema_makes(
    tmp_path: Path, pg_database: str
) -> None:
    """A later schema step that adds a table fails here until the migration knows it."""
    for target in (str(tmp_path / "x.sqlite"), pg_database):
        db = Sql(target)
        try:
            migrate(db)
            assert db.tables() - INTERNAL - {"sqlite_sequence"} == set(TABLES), target
        finally:
            db.close()


def test_migrated_cir_verifies_and_exports_as_the_embedded_one(
    tmp_path: Path, pg_database: str, s3_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    embedded_cir(tmp_path)
    src_cfg = ["--config", str(tmp_path / "central.toml")]
    opts, national = _national(s3_server, tmp_path, pg_database)
    assert main(["cir", "migrate", *src_cfg, *opts]) == 0
    out, err = capsys.readouterr()
    blocks = SCANS * 4 + 1
    assert f"migrated 1 scanner(s), {blocks} blocks" in out
    assert f"{blocks} blobs" in out and "all 1 chains verified on the target" in out
    assert "index rows and scan rows intact" in out
    assert f'cir = "{pg_database}"' in out and "s3_credentials = " in out
    assert "migrate:" in err and "Traceback" not in err
    _same_rows(tmp_path / "cir" / "cir.sqlite", pg_database)

    nat_cfg = ["--config", str(national)]
    assert main(["cir", "verify", *src_cfg]) == 0
    verified = capsys.readouterr().out
    assert main(["cir", "verify", *nat_cfg]) == 0
    assert capsys.readouterr().out == verified
    for ref in range(1, SCANS + 1):
        a, b = tmp_path / f"e{ref}.npz", tmp_path / f"n{ref}.npz"
        assert main(["cir", "export", *src_cfg, str(ref), "--out", str(a)]) == 0
        assert main(["cir", "export", *nat_cfg, str(ref), "--out", str(b)]) == 0
        ea, na = np.load(a), np.load(b)
        assert sorted(ea.files) == sorted(na.files)
        for k in ea.files:
            assert np.array_equal(ea[k], na[k]), (ref, k)
    capsys.readouterr()

    # again: nothing left to copy, nothing duplicated
    assert main(["cir", "migrate", *src_cfg, *opts]) == 0
    out = capsys.readouterr().out
    assert "0 blobs (0 bytes) copied by this run" in out and "(0 inserted by this run)" in out
    _same_rows(tmp_path / "cir" / "cir.sqlite", pg_database)

    # the copied ids move the identity sequences on: the next alarm takes a new id
    cir = Cir(tmp_path / "n", database=pg_database)
    try:
        cir.commit([], {}, {}, [cir.alarm_row(SCANNER, EDGE, "test", "after")])
        assert cir.alarm_rows(1)[0]["id"] == SCANS + 1
        # and the scan refs: a national aggregator's next scan takes a new ref
        assert cir.next_scan_ref() == SCANS + 1
    finally:
        cir.close()


class _CutStore:
    """The real target store, whose link is cut at the ``cut``-th batch."""

    def __init__(self, store: BlobStore, cut: int) -> None:
        self.store = store
        self.cut = cut
        self.location = store.location

    def put(self, blobs: Any) -> None:
        self.cut -= 1
        if self.cut == 0:
            raise StorageError("the link to the object store was cut", fix="-")
        self.store.put(blobs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_migration_cut_short_carries_on_without_duplicating(
    tmp_path: Path, pg_database: str, s3_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    embedded_cir(tmp_path)
    opts, national = _national(s3_server, tmp_path, pg_database)
    store = open_blob_store(
        opts[3], tmp_path, endpoint=s3_server.url, credentials=s3_server.extra["credentials"]
    )
    source = Cir(tmp_path / "cir", create=False)
    target = Cir(tmp_path / "n", blobs=_CutStore(store, 3), database=pg_database)
    try:
        with pytest.raises(StorageError, match="cut"):
            copy_cir(source, target, batch_rows=2)
        # blobs first, index after: the rows of the two batches that went through
        assert [r["seq"] for r in target.sql.rows("SELECT seq FROM blocks ORDER BY seq")] == [
            0, 1, 2, 3,
        ]  # fmt: skip
        assert target.sql.rows("SELECT * FROM streams") == []
        assert len(list(store.names())) == 4
    finally:
        target.wsql.close()
        target.sql.close()
        source.close()
        store.close()
    assert main(["cir", "migrate", "--config", str(tmp_path / "central.toml"), *opts]) == 0
    out = capsys.readouterr().out
    assert f"{SCANS * 4 + 1 - 4} blobs" in out and "all 1 chains verified" in out
    _same_rows(tmp_path / "cir" / "cir.sqlite", pg_database)
    assert main(["cir", "verify", "--config", str(national)]) == 0


def test_a_target_holding_another_cir_is_refused(
    tmp_path: Path, pg_database: str, s3_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    embedded_cir(tmp_path / "a")
    embedded_cir(tmp_path / "b")  # the same scanner and edge, other lines
    opts, _ = _national(s3_server, tmp_path, pg_database)
    assert main(["cir", "migrate", "--config", str(tmp_path / "a" / "central.toml"), *opts]) == 0
    capsys.readouterr()
    before = Sql(pg_database)
    try:
        counts = {t: len(before.rows(f"SELECT * FROM {t}")) for t in TABLES}
    finally:
        before.close()
    assert main(["cir", "migrate", "--config", str(tmp_path / "b" / "central.toml"), *opts]) == 2
    err = capsys.readouterr().err
    print(err)
    assert "\nerror: the target" in err and "holds" in err and "\nfix: " in err
    assert "Traceback" not in err
    after = Sql(pg_database)
    try:
        assert {t: len(after.rows(f"SELECT * FROM {t}")) for t in TABLES} == counts
    finally:
        after.close()


@pytest.mark.parametrize("seq", [1, 9])
def test_a_target_with_another_row_at_the_same_scanner_and_seq_is_refused(
    tmp_path: Path, pg_database: str, s3_server: Any, seq: int
) -> None:
    """The same CIR but for one block row (its commit time): refused before anything is
    copied (in the first batch) or at the batch that holds it, nothing of it written."""
    embedded_cir(tmp_path / "a")
    opts, _ = _national(s3_server, tmp_path, pg_database)
    store = open_blob_store(
        opts[3], tmp_path, endpoint=s3_server.url, credentials=s3_server.extra["credentials"]
    )
    source = Cir(tmp_path / "a" / "cir", create=False)
    target = Cir(tmp_path / "n", blobs=store, database=pg_database)
    try:
        copy_cir(source, target)
        target.wsql.execute(
            "UPDATE blocks SET committed_ns = 7 WHERE scanner = ? AND seq = ?", [SCANNER, seq]
        )
        target.wsql.execute("DELETE FROM blocks WHERE seq > 10")
        with pytest.raises(MigrationConflict, match=rf"committed_ns '7'.*\('{SCANNER}', {seq}\)"):
            copy_cir(source, target, batch_rows=4)
        assert target.sql.value("SELECT COUNT(*) AS n FROM blocks") == 11
    finally:
        target.close()
        source.close()


def test_a_target_that_is_the_source_is_refused(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    Cir(tmp_path / "cir", database=pg_database).close()
    cfg = _config(tmp_path / "central.toml", cir=pg_database)
    other_spelling = pg_database + "?connect_timeout=5"
    assert main(["cir", "migrate", "--config", str(cfg), "--to", other_spelling]) == 2
    err = capsys.readouterr().err
    assert "is this configuration's CIR itself" in err and "\nfix: " in err


@pytest.mark.parametrize(
    ("to", "says"),
    [
        ("mysql://nii@127.0.0.1/nii", "is not a PostgreSQL URL"),
        ("postgresql://nii:secret@127.0.0.1:1/nii", "cannot reach"),
    ],
)
def test_a_bad_target_url_is_one_error_and_a_fix(
    tmp_path: Path, to: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    embedded_cir(tmp_path)
    assert main(["cir", "migrate", "--config", str(tmp_path / "central.toml"), "--to", to]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and says in lines[0]
    assert lines[1].startswith("fix: ") and "secret" not in err


def test_a_table_the_migration_does_not_know_stops_it(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    embedded_cir(tmp_path)
    with sqlite3.connect(tmp_path / "cir" / "cir.sqlite") as lite:
        lite.execute("CREATE TABLE mystery (x)")
    cfg = str(tmp_path / "central.toml")
    assert main(["cir", "migrate", "--config", cfg, "--to", pg_database]) == 2
    err = capsys.readouterr().err
    assert "does not know how to copy: mystery" in err and "\nfix: " in err
    db = Sql(pg_database)
    try:
        assert db.rows("SELECT * FROM blocks") == []
    finally:
        db.close()


def test_central_running_on_the_cir_is_refused(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.locks import hold
    from nii.__main__ import main

    embedded_cir(tmp_path)
    with hold(tmp_path / "cir", "a central aggregator", name="central"):
        cfg = str(tmp_path / "central.toml")
        assert main(["cir", "migrate", "--config", cfg, "--to", pg_database]) == 2
    err = capsys.readouterr().err
    assert "already runs on" in err and "\nfix: " in err


def test_without_blobs_the_blobs_stay_and_only_the_metadata_moves(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    embedded_cir(tmp_path)
    cfg = str(tmp_path / "central.toml")
    assert main(["cir", "migrate", "--config", cfg, "--to", pg_database]) == 0
    out = capsys.readouterr().out
    assert "blobs left where they are" in out and "blobs = " not in out
    cir = Cir(tmp_path / "cir", database=pg_database)
    try:
        assert verify_stream(cir, SCANNER).ok
    finally:
        cir.close()


def test_edges_are_enrolled_listed_and_revoked_on_the_national_cir(
    tmp_path: Path, pg_database: str, s3_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nii central enroll|edges|revoke`` work on a national CIR as on the embedded
    one: its database is the CIR, there is no cir.sqlite to look for (a stolen edge
    box must be revocable)."""
    from core.keys import EdgeKey
    from nii.__main__ import main

    CirKey.generate().save(tmp_path / "keys")
    _, national = _national(s3_server, tmp_path, pg_database)
    assert not (tmp_path / "cir" / "cir.sqlite").exists()  # nothing embedded here
    cfg = ["--config", str(national)]
    key = EdgeKey.generate("edge-stolen")
    key.save(tmp_path / "keys")
    pub = tmp_path / "keys" / "edge-stolen.pub"
    assert pub.exists()
    assert main(["central", "enroll", *cfg, str(pub)]) == 0
    assert main(["central", "edges", *cfg]) == 0
    out = capsys.readouterr().out
    assert "edge-stolen" in out and "enrolled" in out, out
    assert main(["central", "revoke", *cfg, "edge-stolen"]) == 0
    assert main(["central", "edges", *cfg]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("edge-stolen")]
    assert line and "revoked" in line[0], line
