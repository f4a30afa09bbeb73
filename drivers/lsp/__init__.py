"""LSP-1 line scanner driver: TCP detector data link and serial control link."""

from drivers.lsp._control import LspControl, parse_status
from drivers.lsp._link import LspDataLink

__all__ = ["LspControl", "LspDataLink", "parse_status"]
