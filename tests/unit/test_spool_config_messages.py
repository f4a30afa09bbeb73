"""Edge spool, configuration files and wire messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import CentralConfig, EdgeConfig
from core.errors import ConfigError, KeyFileError, ProtocolError
from core.keys import CirKey, CirPublic, EdgeKey, EdgePublic
from core.messages import Ack, BlockMsg, Hello, decode
from core.seal import genesis_hash
from edge import Spool


def spool(tmp_path: Path, max_bytes: int = 10_000) -> Spool:
    return Spool(
        tmp_path / "s.sqlite", max_bytes=max_bytes, high_water=0.5, genesis=genesis_hash("s1")
    )


def test_spool_survives_reopen_and_releases_only_acked(tmp_path: Path) -> None:
    s = spool(tmp_path)
    assert s.fresh and s.state.head_seq == -1 and s.state.head_hash == genesis_hash("s1")
    for seq in range(5):
        s.append(seq, 1, bytes([seq]) * 1000, bytes([seq]) * 32, link_next_seq=10 * (seq + 1))
    s.ack(2)
    s.close()
    s = spool(tmp_path)
    assert not s.fresh
    assert (s.state.head_seq, s.state.acked_seq, s.state.link_next_seq) == (4, 2, 50)
    assert s.state.head_hash == bytes([4]) * 32
    assert s.get(2) is None and s.get(3) == bytes([3]) * 1000
    assert s.depth == 2 and s.bytes_used == 2000
    s.close()


def test_spool_bounds(tmp_path: Path) -> None:
    s = spool(tmp_path, max_bytes=4000)
    s.append(0, 1, b"a" * 1500, bytes(32), 1)
    assert not s.above_high_water
    s.append(1, 1, b"b" * 1500, bytes(32), 2)
    assert s.above_high_water and not s.full
    s.append(2, 1, b"c" * 1500, bytes(32), 3)
    assert s.full
    s.ack(1)
    assert not s.full and s.bytes_used == 1500
    with pytest.raises(AssertionError):
        s.append(7, 1, b"x", bytes(32), 4)  # out of order: never written
    assert s.get(7) is None
    s.close()


def test_spool_adopts_cir_head(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.append(0, 1, b"a", bytes(32), 5)
    s.adopt(9, b"h" * 32, 77)
    assert (s.state.head_seq, s.state.link_next_seq, s.state.acked_seq, s.depth) == (9, 77, 9, 0)
    s.close()


def test_config_resolves_paths_and_rejects_nonsense(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[central]\nkey = "k/cir.key"\nstate_dir = "cir"\n')
    c = CentralConfig.load(tmp_path / "c.toml")
    assert c.key == tmp_path / "k" / "cir.key" and c.listen.startswith("tcp://")
    (tmp_path / "e.toml").write_text(
        '[edge]\nid = "e1"\nkey = "k"\ncir_public = "p"\n\n[[scanner]]\nid = "s1"\n'
        'serial = "/dev/ttyS0"\ndata = "[::1]:7700"\nblock_ms = 50\n'
    )
    e = EdgeConfig.load(tmp_path / "e.toml")
    assert e.scanners[0].data_host == "::1" and e.scanners[0].block_ms == 50
    for bad, why in [
        ('[edge]\nid = "bad id!"\n', "invalid edge id"),
        ('[edge]\nid = "e1"\nkey = "k"\ncir_public = "p"\n', "no [[scanner]]"),
        (
            '[edge]\nid = "e1"\nkey = "k"\ncir_public = "p"\n[[scanner]]\nid = "s"\n'
            'serial = "x"\ndata = "h:1"\nblock_ms = -3\n',
            "out of range",
        ),
        (
            '[edge]\nid = "e1"\nkey = "k"\ncir_public = "p"\n[[scanner]]\nid = "s"\n'
            'serial = "x"\ndata = "h:1"\n[[scanner]]\nid = "s"\nserial = "y"\ndata = "h:2"\n',
            "appears twice",
        ),
    ]:
        (tmp_path / "bad.toml").write_text(bad)
        with pytest.raises(ConfigError) as ei:
            EdgeConfig.load(tmp_path / "bad.toml")
        assert why in ei.value.message and ei.value.fix


def test_an_edge_lists_one_aggregator_or_several(tmp_path: Path) -> None:
    head = '[edge]\nid = "e1"\nkey = "k"\ncir_public = "p"\n'
    scanner = '[[scanner]]\nid = "s1"\nserial = "x"\ndata = "h:1"\n'
    (tmp_path / "e.toml").write_text(head + 'central = "tcp://a:7600"\n' + scanner)
    e = EdgeConfig.load(tmp_path / "e.toml")
    assert e.central == "tcp://a:7600" and e.centrals == ("tcp://a:7600",)
    (tmp_path / "e.toml").write_text(
        head + 'central = ["tcp://a:7600", "tcp://b:7600"]\n' + scanner
    )
    e = EdgeConfig.load(tmp_path / "e.toml")
    assert e.central == "tcp://a:7600" and e.centrals == ("tcp://a:7600", "tcp://b:7600")
    for bad, why in [
        ("central = []", "non-empty list"),
        ('central = ["tcp://a:7600", "tcp://a:7600"]', "listed twice"),
        ('central = ["tcp://a:7600", "a:7600"]', "not a ZeroMQ endpoint"),
        ("central = 7600", "non-empty list"),
    ]:
        (tmp_path / "e.toml").write_text(head + bad + "\n" + scanner)
        with pytest.raises(ConfigError) as ei:
            EdgeConfig.load(tmp_path / "e.toml")
        assert why in ei.value.message and ei.value.fix


def test_keys_round_trip_and_refuse_overwrite(tmp_path: Path) -> None:
    k = EdgeKey.generate("edge-1")
    priv, pub = k.save(tmp_path)
    assert oct(priv.stat().st_mode & 0o777) == "0o600"
    assert EdgeKey.load(priv).curve_public == k.curve_public
    assert EdgePublic.load(pub).sign_public_b64 == k.public.sign_public_b64
    c = CirKey.generate()
    _, cpub = c.save(tmp_path)
    assert CirPublic.load(cpub).curve_public == c.curve_public
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        k.save(tmp_path)
    with pytest.raises(KeyFileError, match="is not a CIR public key"):
        CirPublic.load(pub)


def test_messages_round_trip_and_reject_garbage() -> None:
    m, extra = decode(BlockMsg(scanner="s1", seq=4).frames(b"raw"))
    assert isinstance(m, BlockMsg) and m.seq == 4 and extra == [b"raw"]
    m, _ = decode(Ack(scanner="s1", seq=9, boot="b").frames())
    assert isinstance(m, Ack) and m.seq == 9
    m, _ = decode(Hello(edge="e", scanner="s", head_seq=-1, head_hash="", boot="0a").frames())
    assert isinstance(m, Hello)
    for frames in (
        [b"ACK"],
        [b"NOPE", b"{}"],
        [b"ACK", b"not json"],
        [b"ACK", b"[1]"],
        [b"ACK", b'{"scanner": "s"}'],
    ):
        with pytest.raises(ProtocolError):
            decode(frames)


def test_central_atr_settings(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[central]\nkey = "k"\natr = false\natr_max_backlog = 3\n')
    c = CentralConfig.load(tmp_path / "c.toml")
    assert c.atr is False and c.atr_max_backlog == 3
    (tmp_path / "c.toml").write_text('[central]\nkey = "k"\natr = "no"\n')
    with pytest.raises(ConfigError, match="true or false"):
        CentralConfig.load(tmp_path / "c.toml")
    assert c.atr_workers == "embedded"  # a thread of the aggregator, by default
    (tmp_path / "c.toml").write_text('[central]\nkey = "k"\natr_workers = "external"\n')
    assert CentralConfig.load(tmp_path / "c.toml").atr_workers == "external"
    (tmp_path / "c.toml").write_text('[central]\nkey = "k"\natr_workers = "gpu"\n')
    with pytest.raises(ConfigError, match="atr_workers") as err:
        CentralConfig.load(tmp_path / "c.toml")
    assert "nii atr worker" in err.value.fix
