"""The generation gate of a Ray search: which generation of a population sampler may run now.

A small Ray actor (no CPU of its own). The driver's searcher hands a trial of the next generation
to Ray Tune at once, and the trial waits in its worker until the driver opens the gate; that way
Tune keeps its workers (it ends idle ones while it has no trial to give them, and starting a
worker again costs seconds). Kept in its own module, with no imports, so the actor's process
loads nothing heavy.
"""

from __future__ import annotations

__all__ = ["Gate"]


class Gate:
    """Trials of generations up to `open` may run; later ones wait."""

    def __init__(self) -> None:
        self.open = -1

    def set(self, generation: int) -> None:
        self.open = generation

    def get(self) -> int:
        return self.open
