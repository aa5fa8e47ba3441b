"""Every URL of the dashboard namespace, found by walking the resolver, with sample kwargs."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, get_resolver, reverse

# Views that only accept POST (controls); every other dashboard URL is a page.
POST_ONLY = {
    "position-flatten",
    "settings-risk",
    "pause",
    "resume",
    "halt",
    "arm",
    "disarm",
}


def dashboard_url_names() -> set[str]:
    """The names of every URL pattern in the ``dashboard`` namespace."""
    names: set[str] = set()
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace == "dashboard":
            for pattern in entry.url_patterns:
                assert isinstance(pattern, URLPattern)
                names.add(pattern.name)
    return names


def sample_kwargs(name: str, *, ticker: str, decision: int, position: int) -> dict[str, object]:
    """Arguments for ``reverse`` from the URL's own converters."""
    pattern = next(
        p
        for entry in get_resolver().url_patterns
        if isinstance(entry, URLResolver) and entry.namespace == "dashboard"
        for p in entry.url_patterns
        if p.name == name
    )
    converters = pattern.pattern.converters
    values = {"ticker": ticker, "pk": position if name.startswith("position") else decision}
    return {key: values[key] for key in converters}


def all_urls(*, ticker: str, decision: int, position: int) -> dict[str, str]:
    return {
        name: reverse(
            f"dashboard:{name}",
            kwargs=sample_kwargs(name, ticker=ticker, decision=decision, position=position),
        )
        for name in sorted(dashboard_url_names())
    }
