"""Shared machinery: registry, typed configs, distributed helpers, logging, optim, checkpoint io.

Importing it registers the config resolvers (``${pkg:NAME}``) that model and run YAMLs use.
"""

from lavis.common import config  # noqa: F401
