"""Client-side pieces for Shoal: the native Python client and the Chroma and Weaviate
integrations. No torch. Everything is imported on first use, so `import connectors` is
free: `connectors.chroma` needs chromadb, `connectors.weaviate` weaviate-client (for its
configuration helpers), `connectors.client` httpx, msgspec and numpy."""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncShoalClient", "Encoding", "Ranking", "ShoalClient", "ShoalError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'connectors' has no attribute {name!r}")
