"""kubesim: a simulated Kubernetes API server and cluster for ClusterResync's tests and demo.

kubectl, Kopf and the official kubernetes client talk to it over HTTP as they would to a real
kube-apiserver. See ``tests/kubesim/README.md`` for what is emulated, simplified and absent.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
