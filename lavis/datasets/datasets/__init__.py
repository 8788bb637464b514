"""Dataset classes: a table of samples (map-style) and the Quilt-1M shard stream (iterable)."""
