"""Shared pytest fixtures: a kubesim cluster per test module, and clients for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubesim.testing import KubeSim


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    """A fresh kubesim cluster for the test module."""
    with KubeSim() as sim:
        yield sim


@pytest.fixture(scope="module")
def k8s_client(kubesim: KubeSim):  # type: ignore[no-untyped-def]
    """An official kubernetes ApiClient configured from the admin kubeconfig."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kubesim.kubeconfig))
    yield api_client
    api_client.close()
    del client
