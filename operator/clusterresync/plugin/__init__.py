"""``kubectl resync``: the kubectl plugin of ClusterResync (console script ``kubectl-resync``).

See docs/plugin.md. ``cli`` parses the command line and talks to the cluster (``kubeapi``);
``views`` turns the objects into tables (pure); ``render`` prints them.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
