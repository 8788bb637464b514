"""Sizes in words, for the free-space checks that run before a large write (a checkpoint, the
feature cache), so that a full disk is one line at the start rather than a failure midway."""

from __future__ import annotations


def human_bytes(count: float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; whole bytes below 1 KiB; None -> ``"unknown size"``."""
    if count is None:
        return "unknown size"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"
