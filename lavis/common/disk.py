"""Sizes in words, for the free-space checks that run before a large write (a checkpoint, the
feature cache), so that a full disk is one line at the start rather than a failure midway."""

from __future__ import annotations


def human_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; whole bytes below 1 KiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GiB"
