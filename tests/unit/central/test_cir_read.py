"""Reading the CIR as evidence: an export verifies every block of the scan it hands out.

Before, ``nii cir export`` decrypted without checking: a block replaced by one sealed
with a rogue key (the CIR's public key is on every edge) exported as lines with exit
0, and a block row re-labelled ``gap`` silently dropped its lines (issue 15).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import zmq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central._cir import Cir
from central._ingest import Ingest, Work
from central._reader import scan_arrays, verify_stream
from core.errors import IntegrityError
from core.keys import CirKey, EdgePublic
from core.messages import BlockMsg
from core.seal import Opener, Sealer, parse
from tests.unit.central._chain import EDGE, IDENT, SCANNER, Rig, committed_cir


def test_an_untouched_scan_exports_its_lines(tmp_path: Path) -> None:
    cir, r, _ = committed_cir(tmp_path / "cir")
    try:
        arrays = scan_arrays(cir, Opener(r.cir), 1)
        assert arrays["image_high"].shape == (8, 4) and list(arrays["line_no"]) == [0, 1, 2, 3]
    finally:
        cir.close()


def test_a_block_sealed_with_a_rogue_key_is_refused_on_export(tmp_path: Path) -> None:
    cir, r, hashes = committed_cir(tmp_path / "cir")
    try:
        real = parse(cir.blobs.get(hashes[1]))
        # the same block, same place in the chain, sealed by someone who holds only the
        # CIR's public key; its blob stored and the index row pointed at it
        rogue = Sealer(Ed25519PrivateKey.generate(), r.cir.public_key())
        raw, h = rogue.seal(
            kind=real.kind, seq=real.seq, prev_hash=real.prev_hash, meta=real.meta,
            index=[(e.line_no, e.flags, e.ts_ns, e.link_seq) for e in real.index],
            payload=b"\xff" * len(Opener(r.cir).open(real)),
            created_ns=real.created_ns,
        )  # fmt: skip
        cir.blobs.put([(h, raw)])
        cir.wsql.execute(
            "UPDATE blocks SET hash = ? WHERE scanner = ? AND seq = ?", [h.hex(), SCANNER, 1]
        )
        with pytest.raises(IntegrityError, match="seq 1: bad signature"):
            scan_arrays(cir, Opener(r.cir), 1)
        assert not verify_stream(cir, SCANNER).ok
    finally:
        cir.close()


def test_a_row_relabelled_gap_is_refused_on_export(tmp_path: Path) -> None:
    cir, r, _ = committed_cir(tmp_path / "cir")
    try:
        cir.wsql.execute("UPDATE blocks SET kind = 'gap' WHERE scanner = ? AND seq = 1", [SCANNER])
        with pytest.raises(IntegrityError, match="the index says gap, the signed block is data"):
            scan_arrays(cir, Opener(r.cir), 1)
    finally:
        cir.close()


def test_a_modified_row_is_found_by_verify_and_refused_on_export(tmp_path: Path) -> None:
    cir, r, _ = committed_cir(tmp_path / "cir")
    try:
        assert verify_stream(cir, SCANNER).ok
        cir.wsql.execute("UPDATE blocks SET n_lines = 2 WHERE scanner = ? AND seq = 1", [SCANNER])
        rep = verify_stream(cir, SCANNER)
        assert rep.problems == [
            "s1 seq 1: the index row differs from the signed block: n_lines 2 (signed: 4)"
        ]
        with pytest.raises(IntegrityError, match="n_lines 2"):
            scan_arrays(cir, Opener(r.cir), 1)
    finally:
        cir.close()


def test_a_block_filed_under_another_scan_is_found_by_verify_and_refused(
    tmp_path: Path,
) -> None:
    """``scan_ref`` is the CIR's own, not signed: a block moved to another scan (or a scan
    row re-numbered) must not pass as that scan's evidence."""
    cir, r, _ = committed_cir(tmp_path / "cir")
    try:
        cir.wsql.execute("UPDATE blocks SET scan_ref = 99 WHERE scanner = ? AND seq = 1", [SCANNER])
        assert verify_stream(cir, SCANNER).problems == [
            "s1 seq 1: the index files this block under scan ref 99 (no such scan); "
            "the signed block is s1 scan 1"
        ]
        cir.wsql.execute("UPDATE blocks SET scan_ref = 1 WHERE scanner = ? AND seq = 1", [SCANNER])
        assert verify_stream(cir, SCANNER).ok
        cir.wsql.execute("UPDATE scans SET scan_id = 7 WHERE ref = 1")
        rep = verify_stream(cir, SCANNER)
        assert rep.problems and all("(s1 scan 7)" in p for p in rep.problems), rep.problems
        with pytest.raises(IntegrityError, match="scan ref 1"):
            scan_arrays(cir, Opener(r.cir), 1)
    finally:
        cir.close()


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        # the container number, then the GD a court would read the scan under
        ("container = 'MSKU9999997'", "container 'MSKU9999997' (signed: 'C1')"),
        ("gd_number = 'GD-FORGED'", "gd_number 'GD-FORGED' (signed: None)"),
        (
            "start_record = json_set(start_record, '$.container', 'MSKU9999997')",
            "its start record differs from the signed scan-start block",
        ),
        ("end_record = NULL", "its end record differs from the signed scan-end block"),
        ("lines_received = 3", "lines_received 3 (signed blocks: 4)"),
        ("blocks = 2", "blocks 2 (signed blocks: 3)"),
        ("gaps = -1", "gaps -1, yet 0 GAP block(s) are filed under it"),
        # a complete scan made to look broken: a release it earned would look unfounded
        ("status = 'incomplete'", "status 'incomplete', yet its signed blocks show it complete"),
        ("status = NULL", "status None, yet its signed blocks show it complete"),
    ],
)
def test_a_scan_row_edited_behind_the_cirs_back_is_found_and_refused(
    tmp_path: Path, edit: str, problem: str
) -> None:
    """A ``scans`` row is the CIR's own index, not signed: what it says of the container,
    the GD, the records and the counts must be what the scan's signed blocks say."""
    cir, r, _ = committed_cir(tmp_path / "cir")
    try:
        assert verify_stream(cir, SCANNER, Opener(r.cir)).ok
        cir.wsql.execute(f"UPDATE scans SET {edit} WHERE ref = 1")
        assert verify_stream(cir, SCANNER).ok  # without the CIR key: chains only
        rep = verify_stream(cir, SCANNER, Opener(r.cir))
        assert rep.problems == [f"s1 scan ref 1: {problem}"]
        with pytest.raises(IntegrityError, match="row of the scan differs from its signed"):
            scan_arrays(cir, Opener(r.cir), 1)
    finally:
        cir.close()


def test_a_closed_scan_made_to_look_still_open_is_found(tmp_path: Path) -> None:
    """Only a scanner's newest scan may be ``scanning`` (its counts are not checked yet);
    an older one said to be open is a row edited behind the CIR's back."""
    r = Rig()
    cir = Cir(tmp_path / "cir")
    try:
        cir.enroll(EdgePublic(EDGE, r.sign.public_key(), b"0" * 40))
        ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
        blocks = (r.start(1, lines=2), r.data(1, [0, 1]), r.end(1), r.start(2, lines=2))
        for seq, raw in (*blocks, r.data(2, [0])):
            work = Work()
            ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
            cir.commit(work.staged, ingest.streams, {k: ingest.scans[k] for k in work.scans}, [])
            ingest.committed(work)
        assert [s["status"] for s in cir.scans()] == ["scanning", "complete"]
        assert verify_stream(cir, SCANNER, Opener(r.cir)).ok
        cir.wsql.execute("UPDATE scans SET status = 'scanning', lines_received = 1 WHERE ref = 1")
        assert verify_stream(cir, SCANNER, Opener(r.cir)).problems == [
            "s1 scan ref 1: status 'scanning', yet a later scan of its scanner has started",
            "s1 scan ref 1: lines_received 1 (signed blocks: 2)",
        ]
        with pytest.raises(IntegrityError, match="a later scan of its scanner"):
            scan_arrays(cir, Opener(r.cir), 1)
    finally:
        cir.close()


@pytest.mark.parametrize("head", [5, 1, "x"])
def test_a_stream_head_edited_is_found(tmp_path: Path, head: Any) -> None:
    cir, _, _ = committed_cir(tmp_path / "cir")
    try:
        cir.wsql.execute("UPDATE streams SET last_seq = ?", [head])
        rep = verify_stream(cir, SCANNER)
        assert rep.problems == [f"stream head says {head!r}, blocks end at 2"]
    finally:
        cir.close()


def test_blocks_committed_while_verify_walks_the_chain_are_no_problem(tmp_path: Path) -> None:
    """verify on a live CIR: a block committed between reading the stream's head and
    walking its blocks is not a broken chain."""
    cir, r, _ = committed_cir(tmp_path / "cir")
    ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
    walk = cir.stream_blocks

    def committing_walk(scanner: str) -> Any:
        work = Work()
        seq, raw = r.start(2, lines=4)
        ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
        cir.commit(work.staged, ingest.streams, {k: ingest.scans[k] for k in work.scans}, [])
        ingest.committed(work)
        return walk(scanner)

    try:
        cir.stream_blocks = committing_walk  # type: ignore[method-assign]
        rep = verify_stream(cir, SCANNER, Opener(r.cir))
        assert rep.ok and rep.last_seq == 3, rep.problems
    finally:
        cir.close()


def test_an_incomplete_scan_made_to_look_complete_is_found(tmp_path: Path) -> None:
    """A scan whose end record said ``aborted`` (one line short) cannot be passed off as
    complete by its row, even with its counts made to agree."""
    r = Rig()
    cir = Cir(tmp_path / "cir")
    try:
        cir.enroll(EdgePublic(EDGE, r.sign.public_key(), b"0" * 40))
        ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
        for seq, raw in (r.start(1, lines=4), r.data(1, [0, 1, 2]), r.end(1, "aborted")):
            work = Work()
            ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
            cir.commit(work.staged, ingest.streams, {k: ingest.scans[k] for k in work.scans}, [])
            ingest.committed(work)
        assert cir.scan(1)["status"] == "aborted"
        assert verify_stream(cir, SCANNER, Opener(r.cir)).ok
        cir.wsql.execute("UPDATE scans SET status = 'complete' WHERE ref = 1")
        assert verify_stream(cir, SCANNER, Opener(r.cir)).problems == [
            "s1 scan ref 1: status 'complete', which its signed blocks do not bear out"
        ]
    finally:
        cir.close()


def test_an_honest_scan_broken_before_a_restart_of_central_verifies(tmp_path: Path) -> None:
    """A scan that broke its shape (a block of another width), then had central restart
    under it, is counted by the restarted ingest as its readers count it: verify passes
    and its lines export (before, the restarted ingest counted lines the readers
    reject, and verify called the honest scan's row tampered)."""
    r = Rig()
    cir = Cir(tmp_path / "cir")
    try:
        cir.enroll(EdgePublic(EDGE, r.sign.public_key(), b"0" * 40))
        blocks = [r.start(1, lines=8), r.data(1, [0, 1, 2, 3]), r.data(1, [4, 5], channels=6)]
        blocks += [r.data(1, [2, 3]), r.data(1, [4, 5, 6, 7]), r.end(1)]
        ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
        for i, (seq, raw) in enumerate(blocks):
            if i == 3:  # central restarts mid-scan
                cir.close()
                cir = Cir(tmp_path / "cir")
                ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
            work = Work()
            ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
            cir.commit(work.staged, ingest.streams, {k: ingest.scans[k] for k in work.scans}, [])
            ingest.committed(work)
        row = cir.scan(1)
        assert (row["status"], row["lines_received"]) == ("incomplete", 8)
        assert verify_stream(cir, SCANNER, Opener(r.cir)).ok
        assert list(scan_arrays(cir, Opener(r.cir), 1)["line_no"]) == list(range(8))
    finally:
        cir.close()


def _cli_cir(tmp_path: Path, r: Any) -> list[str]:
    key = CirKey(r.cir, *reversed(zmq.curve_keypair()))
    key.save(tmp_path / "keys")
    (tmp_path / "central.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "cir"\n')
    return ["--config", str(tmp_path / "central.toml")]


def test_nii_cir_verify_and_export_say_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    cir, r, _ = committed_cir(tmp_path / "cir")
    cfg = _cli_cir(tmp_path, r)
    # a file in the blob store that is no sealed block (a write cut by a power loss):
    # nothing refers to it, and it is named
    orphan = hashlib.sha256(b"cut short").digest()
    cir.blobs.put([(orphan, b"never indexed")])
    cir.close()
    assert main(["cir", "verify", *cfg]) == 0
    out = capsys.readouterr().out
    assert "1 file(s)" in out and orphan.hex() in out and "chains verified" in out
    assert "scan rows intact" in out
    cir = Cir(tmp_path / "cir")
    cir.wsql.execute("UPDATE scans SET container = 'MSKU9999997' WHERE ref = 1")
    cir.close()
    assert main(["cir", "verify", *cfg]) == 1
    assert "scan ref 1: container 'MSKU9999997' (signed: 'C1')" in capsys.readouterr().out
    assert main(["cir", "export", *cfg, "1", "--out", str(tmp_path / "s0.npz")]) != 0
    assert "differs from its signed blocks" in capsys.readouterr().err
    cir = Cir(tmp_path / "cir")
    cir.wsql.execute("UPDATE scans SET container = 'C1' WHERE ref = 1")
    cir.close()
    assert main(["cir", "export", *cfg, "1", "--out", str(tmp_path / "s1.npz")]) == 0
    capsys.readouterr()
    cir = Cir(tmp_path / "cir")
    cir.wsql.execute("UPDATE blocks SET kind = 'gap' WHERE seq = 1")
    cir.close()
    assert main(["cir", "verify", *cfg]) == 1
    assert "the index says gap" in capsys.readouterr().out
    assert main(["cir", "export", *cfg, "1", "--out", str(tmp_path / "s2.npz")]) != 0
    err = capsys.readouterr().err
    assert "the index says gap" in err and "Traceback" not in err
    assert not (tmp_path / "s2.npz").exists()


def test_rows_holding_what_no_row_should_are_reported_not_crashed_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    cir, r, _ = committed_cir(tmp_path / "cir")
    cfg = _cli_cir(tmp_path, r)
    cir.wsql.execute("UPDATE blocks SET scan_ref = 'abc' WHERE seq = 2")
    cir.wsql.execute("UPDATE scans SET status = NULL, scanner = NULL, started_ns = 'x'")
    cir.close()
    assert main(["cir", "scans", *cfg]) == 0
    out = capsys.readouterr().out
    assert "    1 -" in out and "Traceback" not in out
    assert main(["cir", "verify", *cfg]) == 1
    out = capsys.readouterr().out
    assert "s1 seq 2: the index files this block under scan ref 'abc', which is no scan ref" in out
    assert "1 scan row(s) of no scanner's chain in the CIR" in out and "ref 1 (None)" in out


def test_a_wrong_cir_key_is_said_to_be_wrong_not_that_every_scan_is_tampered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from nii.__main__ import main

    cir, _, _ = committed_cir(tmp_path / "cir")
    wrong_key = X25519PrivateKey.from_private_bytes(bytes(range(7, 39)))
    wrong = Opener(wrong_key)
    try:
        rep = verify_stream(cir, SCANNER, wrong)
        assert len(rep.problems) == 1 and "the key is not this CIR's" in rep.problems[0]
        with pytest.raises(IntegrityError, match="is this the CIR's own key"):
            scan_arrays(cir, wrong, 1)
    finally:
        cir.close()
    # the command checks the chains, says the key is wrong, and fails
    other = Rig()
    other.cir = wrong_key  # saved where central's own key should be
    cfg = _cli_cir(tmp_path, other)
    assert main(["cir", "verify", *cfg]) == 1
    out = capsys.readouterr().out
    assert "opens none of the 2 latest scan records" in out and "fix:" in out
    assert "all 1 chains verified" in out and "tampered" not in out
    assert main(["cir", "export", *cfg, "1", "--out", str(tmp_path / "s.npz")]) != 0
    err = capsys.readouterr().err
    assert "is this the CIR's own key" in err and "Traceback" not in err


def test_nii_cir_verify_on_a_national_cir_finds_a_modified_blob_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """The same evidence checks on PostgreSQL and an S3-compatible store, done behind the
    CIR's back (an object rewritten through the store's own API, a row through SQL)."""
    import boto3

    from central._blobs import open_blob_store
    from central._sql import Sql
    from nii.__main__ import main
    from nii._local_servers import S3_ACCESS_KEY, S3_SECRET_KEY

    pg, s3 = request.getfixturevalue("pg_database"), request.getfixturevalue("s3_server")
    prefix = f"nat-{tmp_path.name}"
    blobs = open_blob_store(
        f"s3://{s3.extra['bucket']}/{prefix}", tmp_path,
        endpoint=s3.url, credentials=s3.extra["credentials"],
    )  # fmt: skip
    cir, r, hashes = committed_cir(tmp_path / "cir", blobs, database=pg)
    cir.close()
    key = CirKey(r.cir, *reversed(zmq.curve_keypair()))
    key.save(tmp_path / "keys")
    (tmp_path / "central.toml").write_text(
        f'[central]\nkey = "keys/cir.key"\nstate_dir = "cir"\ncir = "{pg}"\n'
        f'blobs = "s3://{s3.extra["bucket"]}/{prefix}"\ns3_endpoint = "{s3.url}"\n'
        f's3_credentials = "{s3.extra["credentials"]}"\n'
    )
    cfg = ["--config", str(tmp_path / "central.toml")]
    assert main(["cir", "verify", *cfg]) == 0
    assert "all 1 chains verified" in capsys.readouterr().out
    # the data block's object rewritten with other bytes, through S3 itself
    client = boto3.client(
        "s3", endpoint_url=s3.url, aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    )  # fmt: skip
    h = hashes[1].hex()
    client.put_object(
        Bucket=s3.extra["bucket"], Key=f"{prefix}/{h[:2]}/{h[2:4]}/{h}", Body=b"x" * 100
    )
    assert main(["cir", "verify", *cfg]) == 1
    out = capsys.readouterr().out
    assert "s1 seq 1: blob" in out and "not a sealed block" in out, out
    # and a row edited in PostgreSQL (the end block's line count)
    db = Sql(pg)
    try:
        db.execute("UPDATE blocks SET n_lines = 9 WHERE scanner = ? AND seq = 2", [SCANNER])
    finally:
        db.close()
    assert main(["cir", "verify", *cfg]) == 1
    out = capsys.readouterr().out
    assert "seq 2: the index row differs from the signed block: n_lines 9" in out, out
    assert main(["cir", "export", *cfg, "1", "--out", str(tmp_path / "s.npz")]) != 0
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "s.npz").exists()
