"""Shared core: errors, wire format of sealed blocks, sealing, messages, config."""
