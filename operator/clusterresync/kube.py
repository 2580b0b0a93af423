"""The one adapter layer between the operator and the Kubernetes API.

Everything the operator does to the cluster goes through ``Kube``: plain dicts in and out, one
REST helper over the official client's transport (authentication, TLS and kubeconfig handling
stay the client's), explicit patch content types, and errors as ``KubeError`` carrying the
API's ``Status`` (code, reason, message) so that a refusal such as a 403 becomes a named reason
in the resync's status. Creating what exists, deleting what is gone and a uid precondition that
no longer holds are not errors: each action is idempotent.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.stream import stream

from .state import HookOutcome, Obj, Ref

CLIENT_TIMEOUT = 30.0


class KubeError(Exception):
    def __init__(self, code: int, reason: str, message: str, verb: str = "", what: str = "") -> None:
        super().__init__(f"{verb} {what}: {code} {reason}: {message}".strip())
        self.code = code
        self.reason = reason
        self.message = message
        self.verb = verb
        self.what = what


def load_api_client() -> client.ApiClient:
    """In-cluster configuration when running in a pod, else KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def path_for(api_version: str, plural: str, namespace: str = "", name: str = "", sub: str = "") -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{quote(namespace)}")
    parts.append(plural)
    if name:
        parts.append(quote(name))
    if sub:
        parts.append(sub)
    return "/".join(parts)


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    # -- transport ---------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        m, url, hdrs, payload, post = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api_client.call_api(
            m, url, header_params=hdrs, body=payload, post_params=post, _request_timeout=CLIENT_TIMEOUT
        )
        raw = resp.read()
        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        if resp.status >= 400:
            try:
                st = json.loads(text)
                raise KubeError(
                    resp.status, str(st.get("reason", "")), str(st.get("message", text)), method, what or path
                )
            except ValueError:
                raise KubeError(resp.status, "", text, method, what or path) from None
        return json.loads(text) if text else None

    # -- verbs -------------------------------------------------------------------------------
    def get(self, ref: Ref) -> Obj | None:
        try:
            out: Obj = self.request(
                "GET", path_for(ref.api_version, ref.plural, ref.namespace, ref.name), what=str(ref)
            )
            return out
        except KubeError as e:
            if e.code == 404:
                return None
            raise

    def list_objects(
        self,
        api_version: str,
        plural: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Obj]:
        query = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        out = self.request(
            "GET",
            path_for(api_version, plural, namespace),
            query=query,
            what=f"{plural} in {namespace or 'the cluster'}",
        )
        items: list[Obj] = out.get("items") or []
        return items

    def create(self, ref: Ref, body: Obj) -> Obj | None:
        try:
            out: Obj = self.request(
                "POST", path_for(ref.api_version, ref.plural, ref.namespace), body=body, what=str(ref)
            )
            return out
        except KubeError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                return None
            raise

    def patch(self, ref: Ref, patch: Any, content_type: str) -> Obj | None:
        try:
            out: Obj = self.request(
                "PATCH",
                path_for(ref.api_version, ref.plural, ref.namespace, ref.name),
                body=patch,
                content_type=content_type,
                what=str(ref),
            )
            return out
        except KubeError as e:
            if e.code == 404:
                return None
            raise

    def patch_status(self, ref: Ref, patch: Any) -> Obj:
        out: Obj = self.request(
            "PATCH",
            path_for(ref.api_version, ref.plural, ref.namespace, ref.name, "status"),
            body=patch,
            content_type="application/merge-patch+json",
            what=f"{ref} status",
        )
        return out

    def delete(self, ref: Ref, uid: str | None = None, propagation: str = "Background") -> bool:
        """Delete; False when there was nothing to delete (gone, or replaced under the same name)."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request(
                "DELETE",
                path_for(ref.api_version, ref.plural, ref.namespace, ref.name),
                body=body,
                what=str(ref),
            )
            return True
        except KubeError as e:
            if e.code == 404 or (e.code == 409 and "Precondition failed" in e.message):
                return False
            raise

    def exec(
        self, namespace: str, pod: str, container: str | None, command: list[str], timeout: int
    ) -> HookOutcome:
        """Run a command in a container over the pods/exec WebSocket (as ``kubectl exec`` does)."""
        core = client.CoreV1Api(self.api_client)
        kwargs: dict[str, Any] = {
            "command": command,
            "stderr": True,
            "stdin": False,
            "stdout": True,
            "tty": False,
            "_preload_content": False,
        }
        if container:
            kwargs["container"] = container
        try:
            ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        except Exception as e:  # the upgrade failed: the API refused the exec
            return HookOutcome(False, None, f"exec failed: {e}")
        output: list[str] = []
        try:
            ws.run_forever(timeout=timeout)
            output.append(ws.read_stdout() or "")
            output.append(ws.read_stderr() or "")
            code = ws.returncode
        finally:
            ws.close()
        if code is None:
            return HookOutcome(False, None, "".join(output) + f"\n(no exit status within {timeout}s)")
        return HookOutcome(code == 0, code, "".join(output))
