"""Finding a checkpoint: a local directory, the local hub cache, then the hub itself.

Shared by the exporters. A machine without the hub must fail in seconds with a message that
says what to do instead (a local directory, or the tiny-random checkpoint), not after the
hub client's retries, so the reachability check is a plain TCP connect with a short timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

Loaded = TypeVar("Loaded")


class CheckpointUnavailable(RuntimeError):
    """A checkpoint is neither local nor cached, and the hub cannot provide it."""


def hub_reachable(timeout: float = 5.0) -> bool:
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def cached_snapshot(source: str) -> str | None:
    """The local snapshot directory of hub id `source` if the hub cache holds it, else None."""
    try:
        import huggingface_hub

        return huggingface_hub.snapshot_download(source, local_files_only=True)
    except Exception:
        return None


def ensure_available(source: str, what: str, hint: str) -> str | None:
    """Raise CheckpointUnavailable unless `source` is a directory, cached, or the hub is reachable.

    Returns the local directory to load from (the source itself or its cached snapshot), or
    None when it has to come from the hub. what: e.g. "MusicGen checkpoint", for the message;
    hint: the alternative to suggest.
    """
    if Path(source).is_dir():
        return source
    if (snapshot := cached_snapshot(source)) is not None:
        return snapshot
    if not hub_reachable():
        raise CheckpointUnavailable(
            f"cannot load {what} {source!r}: it is not a local directory, not in the local hub cache, "
            f"and the model hub cannot be reached. Pass a local checkpoint directory, or use {hint}"
        )
    return None


def load_checkpoint(source: str, loader: Callable[[str], Loaded], what: str, hint: str) -> Loaded:
    """`loader(source)` for a directory or a hub id, or CheckpointUnavailable naming `hint`.

    A cached hub id is loaded from its snapshot directory, so no request reaches the hub.
    """
    local = ensure_available(source, what, hint)
    if local is not None:
        try:
            return loader(local)
        except Exception:
            if local == source:
                raise
            # an incomplete cache: let the hub fill it in
            if not hub_reachable():
                raise
    try:
        return loader(source)
    except OSError as err:
        raise CheckpointUnavailable(f"cannot load {what} {source!r}: {str(err).splitlines()[0]} (or use {hint})") from err
