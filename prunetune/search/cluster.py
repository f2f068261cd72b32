"""Ray cluster addresses: the forms accepted, and whether anything answers there before a run starts.

A head started with ``ray start --head --port=6379`` is joined by its ``HOST:PORT``; ``auto`` joins
the cluster this machine already belongs to (Ray finds it); ``ray://HOST:PORT`` goes through Ray
Client (default port 10001). A typo in the host or port otherwise shows only after the run folder
exists, as a Ray traceback.
"""

from __future__ import annotations

import socket

from prunetune.errors import PrunetuneError, bad_key

__all__ = ["ACCEPTED", "check_address", "check_reachable", "endpoint"]

ACCEPTED = "'auto', HOST:PORT of a head started with `ray start --head`, or ray://HOST:PORT (Ray Client)"


def endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that an address names, or None for 'auto'; raises for any other form."""
    if address == "auto":
        return None
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        bad_key("execution.address", address, ACCEPTED)
    return host, int(port)


def check_address(address: str | None) -> None:
    """The address has an accepted form (None: Ray on this machine)."""
    if address is not None:
        endpoint(address)


def check_reachable(address: str | None, *, timeout: float = 5.0) -> None:
    """Something accepts connections at the address's host and port (None and 'auto': nothing to probe)."""
    found = endpoint(address) if address is not None else None
    if found is None:
        return
    host, port = found
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PrunetuneError(
            f"The 'execution.address' key is {address!r}, but nothing answers there ({reason}). "
            f"Start the head there with `ray start --head --port={port}`, or give {ACCEPTED}."
        ) from None
