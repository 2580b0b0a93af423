"""The cluster, as kubectl would reach it: the kubeconfig (``--kubeconfig``, else ``KUBECONFIG``,
else ``~/.kube/config``), its current context or ``--context``, and the context's namespace unless
``-n`` is given. The official kubernetes client does the talking; every error becomes one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from ..models import GROUP, PLURAL, POLICY_PLURAL, VERSION

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class PluginError(Exception):
    """One line for the user, and the exit code (2: usage, not found, refused; 1: a failed resync)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


KINDS = {PLURAL: "ClusterResync", POLICY_PLURAL: "ResyncPolicy"}


def _server_message(e: Any) -> str:
    body = getattr(e, "body", None)
    try:
        doc = json.loads(body) if body else None
    except (TypeError, ValueError):
        doc = None
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    if isinstance(body, bytes | str) and body and len(body) < 300:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return text.strip()
    return str(getattr(e, "reason", "") or e).strip()


@dataclass
class Cluster:
    api: Any  # kubernetes.client.ApiClient
    namespace: str
    context: str

    def close(self) -> None:
        self.api.close()

    # -- errors ------------------------------------------------------------------------------
    def served(self, plural: str) -> bool:
        from kubernetes import client

        try:
            resources = client.CustomObjectsApi(self.api).get_api_resources(GROUP, VERSION)
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise self.error(e, "list", plural) from e
        return any(r.name == plural for r in resources.resources or [])

    def error(self, e: Any, verb: str, what: str, name: str = "") -> PluginError:
        """A PluginError for an ApiException (``what`` is a plural resource or a kind)."""
        from kubernetes import client

        status = getattr(e, "status", 0) or 0
        message = _server_message(e)
        if status == 404 and what in KINDS:
            if not self.served(what):
                return PluginError(
                    f"the {KINDS[what]} CRD is not installed in this cluster ({what}.{GROUP} is not served): "
                    "install ClusterResync first (kubectl apply -k manifests/)"
                )
            if name:
                return PluginError(f'{KINDS[what]} "{name}" not found in namespace "{self.namespace}"')
        if status == 403:
            return PluginError(f"forbidden: {message}")
        if status == 401:
            return PluginError(
                f"unauthorized: the credentials of context {self.context!r} were refused: {message}"
            )
        if status == 404:
            return PluginError(f"not found: {message}")
        if isinstance(e, client.ApiException) and status == 0:
            return PluginError(f"cannot reach the cluster of context {self.context!r}: {message}")
        return PluginError(f"could not {verb} {what}{' ' + name if name else ''}: {message} ({status})")

    def _call(self, verb: str, what: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes import client
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except client.ApiException as e:
            raise self.error(e, verb, what, name) from e
        except HTTPError as e:
            host = self.api.configuration.host
            raise PluginError(f"cannot reach the cluster at {host} (context {self.context!r}): {e}") from e

    # -- custom objects ----------------------------------------------------------------------
    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def get(self, plural: str, name: str) -> Obj:
        c = self._custom()
        return cast(
            Obj,
            self._call(
                "get",
                plural,
                name,
                c.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
            ),
        )

    def list_objects(self, plural: str, **kwargs: Any) -> Obj:
        c = self._custom()
        return cast(
            Obj,
            self._call(
                "list",
                plural,
                "",
                c.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                **kwargs,
            ),
        )

    def create(self, plural: str, body: Obj) -> Obj:
        c = self._custom()
        return cast(
            Obj,
            self._call(
                "create",
                plural,
                "",
                c.create_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                body,
            ),
        )

    def merge_patch(self, plural: str, name: str, patch: Obj) -> Obj:
        """A JSON merge patch (RFC 7386), with its content type said explicitly."""
        c = self._custom()
        return cast(
            Obj,
            self._call(
                "patch",
                plural,
                name,
                c.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
                patch,
                _content_type=MERGE_PATCH,
            ),
        )

    def watch(
        self, plural: str, name: str, resource_version: str, timeout: int = 300
    ) -> Iterator[tuple[str, Obj]]:
        """Events of one object (a watch with ``fieldSelector=metadata.name``), from ``resource_version``."""
        from kubernetes import client, watch
        from urllib3.exceptions import HTTPError

        w = cast(Any, watch).Watch()
        c = self._custom()
        try:
            for event in w.stream(
                c.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                field_selector=f"metadata.name={name}",
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout,
            ):
                obj = event.get("raw_object") or event.get("object")
                yield str(event.get("type")), cast(Obj, obj)
        except client.ApiException as e:
            if e.status == 410:  # the resourceVersion is too old: the caller reads again
                yield "EXPIRED", {}
                return
            raise self.error(e, "watch", plural, name) from e
        except HTTPError as e:
            raise PluginError(f"the watch of {name} was interrupted: {e}") from e
        finally:
            w.stop()

    # -- built-in kinds ----------------------------------------------------------------------
    def statefulset(self, name: str) -> Obj:
        from kubernetes import client

        apps = client.AppsV1Api(self.api)
        try:
            raw: Any = apps.read_namespaced_stateful_set(name, self.namespace, _preload_content=False)
        except client.ApiException as e:
            if e.status == 404:
                raise PluginError(f'StatefulSet "{name}" not found in namespace "{self.namespace}"') from e
            raise self.error(e, "get", "statefulsets", name) from e
        return cast(Obj, json.loads(raw.data))

    def persistent_volumes(self, label_selector: str) -> list[Obj]:
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        raw = self._call(
            "list",
            "persistentvolumes",
            "",
            core.list_persistent_volume,
            label_selector=label_selector,
            _preload_content=False,
        )
        return cast(list[Obj], json.loads(raw.data).get("items") or [])


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    """Load the kubeconfig as kubectl does (``KUBECONFIG`` may list several files)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        contexts, current = cast(Any, config).list_kube_config_contexts(config_file=kubeconfig)
        chosen = current
        if context:
            chosen = next((c for c in contexts if c.get("name") == context), None)
            if chosen is None:
                raise PluginError(f"context {context!r} not found in the kubeconfig")
        if not chosen:
            raise PluginError("the kubeconfig has no current context: give --context")
        configuration = client.Configuration()
        cast(Any, config).load_kube_config(
            config_file=kubeconfig,
            context=chosen["name"],
            client_configuration=configuration,
            persist_config=False,
        )
    except ConfigException as e:
        raise PluginError(f"cannot load the kubeconfig: {e}") from e
    except OSError as e:
        raise PluginError(f"cannot read the kubeconfig: {e}") from e
    ns = namespace or (chosen.get("context") or {}).get("namespace") or "default"
    return Cluster(client.ApiClient(configuration), str(ns), str(chosen["name"]))
