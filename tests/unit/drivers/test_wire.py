"""The public LSP-1 wire map is the whole of the private one, name for name."""

from __future__ import annotations

import drivers.lsp._io as io
import drivers.lsp.wire as wire


def test_wire_exports_every_definition_of_the_wire_map() -> None:
    assert sorted(wire.__all__) == sorted(io.__all__)
    for name in io.__all__:
        assert getattr(wire, name) is getattr(io, name), name
