"""The mailbox of kept trial weights on Ray: workers put a trial's bytes, the driver takes them.

A small Ray actor (no CPU of its own), kept in its own module with no imports so its process loads
nothing heavy. The driver writes the files itself, so they land in its run folder even when the
workers run on other nodes, or the driver joins the cluster through Ray Client: no shared file
system is needed. The bytes travel through Ray's object store; one trial's at a time waits here.
"""

from __future__ import annotations

__all__ = ["WeightKeeper"]


class WeightKeeper:
    """Holds each finished trial's weights (by file name) until the driver takes them."""

    def __init__(self) -> None:
        self.waiting: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> None:
        self.waiting[name] = data

    def pop(self, name: str) -> bytes | None:
        return self.waiting.pop(name, None)
