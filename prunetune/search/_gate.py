"""The generation gate of a Ray search: which generation of a population sampler may run now.

A small asyncio Ray actor (no CPU of its own). The driver's searcher hands a trial of the next
generation to Ray Tune at once, and the trial waits in its worker until the driver opens the gate;
that way Tune keeps its workers (it ends idle ones while it has no trial to give them, and starting
a worker again costs seconds). A waiting trial is answered the moment its generation opens, not at
the next poll. Kept in its own module, importing only asyncio, so the actor's process loads nothing
heavy.
"""

from __future__ import annotations

import asyncio

__all__ = ["Gate"]


class Gate:
    """Trials of generations up to `open` may run; later ones wait."""

    def __init__(self) -> None:
        self.open = -1
        self.opened = asyncio.Event()  # set, and replaced, each time the gate opens further

    async def set(self, generation: int) -> None:
        self.open = generation
        opened, self.opened = self.opened, asyncio.Event()
        opened.set()

    async def wait(self, generation: int, timeout: float) -> int:
        """Return once `generation` may run, or after `timeout` seconds; either way, the open generation."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.open < generation:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self.opened.wait(), left)
            except asyncio.TimeoutError:
                break
        return self.open
