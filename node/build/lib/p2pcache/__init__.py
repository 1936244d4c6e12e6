"""p2pcache: an encrypted libp2p cache of GitHub API responses that a CI fleet shares."""

__version__ = "0.1.0"


def get_global_cache():  # noqa: ANN201 - lazy import keeps `import p2pcache` light
    """The process's cache handle; `.get_stats()` returns the contract's counters."""
    from .client import get_global_cache as _get

    return _get()


__all__ = ["__version__", "get_global_cache"]
