"""Fuzz target: the LSP-1 serial frame decoder, ``parse_frame`` and ``parse_status``.

The input is fed to ``SerialDecoder.feed`` in chunks (sizes from its first
byte) and whole to ``parse_frame``; each decoded frame that is a status report
goes to ``drivers.lsp.parse_status`` (a ``DriverError`` is a refusal).
Invariants checked: every decoded frame re-encodes to bytes found in the input,
and the decoder holds no more than one frame's worth of bytes.
"""

from __future__ import annotations

from drivers.lsp import parse_status
from drivers.lsp._io import SERIAL_MAX_FRAME, SerialDecoder, encode_frame, parse_frame

SEEDS: list[bytes] = [
    b"\x05" + encode_frame("ACK", "STS", "idle", 0, 0, "-", "-"),
    b"\x00" + encode_frame("STS", "scanning", 1, 1, 42, "F1;F2") + encode_frame("ACK", "IDN", "x"),
    b"\x03$junk*00\r\n" + encode_frame("EVT", "SCAN_END", 4, 100, "complete"),
    b"\x01" + encode_frame("STS", "armed", 1, 0, "9" * 400, "-"),
]


def one_input(data: bytes) -> None:
    """Decode ``data[1:]`` fed in chunks of ``data[0]`` bytes (0: all at once).

    Raises:
        AssertionError: a decoded frame not present in the input, or an
            unbounded decoder buffer.
    """
    if not data:
        return
    step = data[0] or len(data)
    stream = data[1:]
    parse_frame(stream)
    dec = SerialDecoder()
    for pos in range(0, len(stream), step):
        for fields in dec.feed(stream[pos : pos + step]):
            if encode_frame(*fields).rstrip(b"\r\n") not in stream:
                raise AssertionError(f"decoded a frame that is not in the input: {fields}")
            if fields[0] == "STS":
                parse_status(fields[1:])
            elif fields[:2] == ["ACK", "STS"]:
                parse_status(fields[2:])
        if dec.pending > SERIAL_MAX_FRAME + step:
            raise AssertionError(f"the decoder holds {dec.pending} bytes")
