"""Pod names for process pods: the kubelet's ``/etc/hosts`` and kubesim's stand-in for cluster DNS.

kubesim runs no DNS server. A process pod gets the hosts file the kubelet writes for it
(``pkg/kubelet/kubelet_pods.go``: ``makeHostsMount``, ``ensureHostsFile``,
``managedHostsFileContent``, ``hostsEntriesFromHostAliases``; hostname and domain from
``pkg/kubelet/kubelet_pods.go: GeneratePodHostNameAndDomain``), bind-mounted over ``/etc/hosts``
in the pod's mount namespace, and kubesim appends to it the A records cluster DNS would serve for
headless Services (the DNS specification, kubernetes/dns ``docs/specification.md`` section 2.4,
as CoreDNS's ``kubernetes`` plugin serves it from the endpoints the endpoints controller computes:
``pkg/controller/endpoint/endpoints_controller.go: syncService``,
``podToEndpointAddressForService``; ``pkg/api/v1/endpoints``/``endpointslice`` ``ShouldPodBeInEndpoints``).
glibc's ``files`` source reads ``/etc/hosts`` on every lookup, so ``getent hosts``, ``psql -h``,
``redis-cli -h`` and Python's ``socket.getaddrinfo`` inside the pod see the records.

Records, for a Service with ``clusterIP: None`` and a selector, over the pods of its namespace
that match the selector, have an IP, are not terminating and not in a terminal phase, and are
Ready (all such pods with ``publishNotReadyAddresses``):

- ``<service>.<ns>.svc.cluster.local`` -> every such pod's IP;
- ``<hostname>.<service>.<ns>.svc.cluster.local`` -> the pod's IP when ``spec.hostname`` is set
  and ``spec.subdomain`` is the Service's name (a StatefulSet's pods: ``<pod>.<serviceName>``);
  else ``<a-b-c-d>.<service>.<ns>.svc.cluster.local`` (CoreDNS ``endpointHostname``).

Because a hosts file is not searched the way a resolver applies ``search`` domains, each record
also carries the short names the pod's search list (``<ns>.svc.cluster.local svc.cluster.local
cluster.local``, ``pkg/kubelet/network/dns/dns.go: generateSearchesForDNSClusterFirst``) would
expand to it: ``db-0.db``, ``db`` (same namespace only), ``db-0.db.ns``, ``db-0.db.ns.svc``.

The file is rewritten in place (the bind mount pins the inode) whenever pods or Services change.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

CLUSTER_DOMAIN = "cluster.local"  # the kubelet's --cluster-domain
MANAGED_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
RECORDS_HEADER = "\n# kubesim: cluster DNS records (headless Services; kubesim runs no DNS server).\n"
ETC_HOSTS = "/etc/hosts"


def pod_hostname_and_domain(pod: Mapping[str, Any]) -> tuple[str, str]:
    """``GeneratePodHostNameAndDomain``: hostname = spec.hostname or the pod name (cut to 63),
    domain = ``<subdomain>.<ns>.svc.<cluster domain>`` when spec.subdomain is set."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    hostname = spec.get("hostname") or meta["name"]
    if len(hostname) > 63:
        hostname = hostname[:63].rstrip("-.")  # truncatePodHostnameIfNeeded
    sub = spec.get("subdomain") or ""
    domain = f"{sub}.{meta['namespace']}.svc.{CLUSTER_DOMAIN}" if sub else ""
    return hostname, domain


def uses_cluster_dns(pod: Mapping[str, Any]) -> bool:
    """``pkg/kubelet/network/dns/dns.go: getPodDNSType``: ClusterFirst (unless hostNetwork) and
    ClusterFirstWithHostNet use cluster DNS; Default and None do not."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirstWithHostNet":
        return True
    return policy == "ClusterFirst" and not spec.get("hostNetwork")


def host_aliases_entries(aliases: Iterable[Mapping[str, Any]]) -> str:
    """``hostsEntriesFromHostAliases``."""
    aliases = list(aliases)
    if not aliases:
        return ""
    out = ["\n", "# Entries added by HostAliases.\n"]
    for a in aliases:
        out.append(f"{a.get('ip', '')}\t{chr(9).join(a.get('hostnames') or [])}\n")
    return "".join(out)


def managed_hosts_content(
    ips: list[str], hostname: str, domain: str, aliases: Iterable[Mapping[str, Any]]
) -> str:
    """``managedHostsFileContent``."""
    out = [
        MANAGED_HEADER,
        "127.0.0.1\tlocalhost\n",
        "::1\tlocalhost ip6-localhost ip6-loopback\n",
        "fe00::0\tip6-localnet\n",
        "fe00::0\tip6-mcastprefix\n",
        "fe00::1\tip6-allnodes\n",
        "fe00::2\tip6-allrouters\n",
    ]
    for ip in ips:
        out.append(f"{ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{ip}\t{hostname}\n")
    out.append(host_aliases_entries(aliases))
    return "".join(out)


def host_network_hosts_content(node_hosts: str, aliases: Iterable[Mapping[str, Any]]) -> str:
    """``nodeHostsFileContent``: the node's /etc/hosts (here the host's) plus the host aliases."""
    return MANAGED_HEADER_HOST_NETWORK + node_hosts + host_aliases_entries(aliases)


def kubelet_hosts_content(pod: Mapping[str, Any], ip: str) -> str:
    """What ``ensureHostsFile`` writes for a pod whose sandbox has ``ip``."""
    spec = pod.get("spec") or {}
    aliases = spec.get("hostAliases") or []
    if spec.get("hostNetwork"):
        try:
            with open(ETC_HOSTS, encoding="utf-8", errors="replace") as f:
                node_hosts = f.read()
        except OSError:
            node_hosts = ""
        return host_network_hosts_content(node_hosts, aliases)
    hostname, domain = pod_hostname_and_domain(pod)
    return managed_hosts_content([ip], hostname, domain, aliases)


def _is_ready(pod: Mapping[str, Any]) -> bool:
    """``podutil.IsPodReady``."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def service_records(
    services: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """The A records (fqdn, ip) cluster DNS serves for headless Services, sorted."""
    by_ns: dict[str, list[Mapping[str, Any]]] = {}
    for p in pods:
        by_ns.setdefault(p["metadata"]["namespace"], []).append(p)
    records: set[tuple[str, str]] = set()
    for svc in services:
        spec = svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if spec.get("clusterIP") != "None" or not selector:
            continue  # kubesim serves no ClusterIPs; selector-less Services have hand-made Endpoints
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        publish = bool(spec.get("publishNotReadyAddresses"))
        zone = f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"
        for p in by_ns.get(ns, []):
            labels = p["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            status, pspec = p.get("status") or {}, p.get("spec") or {}
            ip = status.get("podIP")
            # ShouldPodBeInEndpoints(pod, includeTerminating=false)
            if (
                not ip
                or p["metadata"].get("deletionTimestamp")
                or status.get("phase") in ("Succeeded", "Failed")
            ):
                continue
            if not (publish or _is_ready(p)):
                continue  # a notReadyAddress: CoreDNS does not serve it
            records.add((zone, ip))
            # podToEndpointAddressForService: the endpoint hostname
            if pspec.get("hostname") and pspec.get("subdomain") == name:
                records.add((f"{pspec['hostname']}.{zone}", ip))
            else:
                records.add((f"{ip.replace('.', '-')}.{zone}", ip))
    return sorted(records)


def search_aliases(fqdn: str, namespace: str) -> list[str]:
    """The names the search list of a pod in ``namespace`` expands to ``fqdn``."""
    out = []
    for suffix in (f".{namespace}.svc.{CLUSTER_DOMAIN}", f".svc.{CLUSTER_DOMAIN}", f".{CLUSTER_DOMAIN}"):
        if fqdn.endswith(suffix) and len(fqdn) > len(suffix):
            out.append(fqdn[: -len(suffix)])
    return out


def records_content(records: Iterable[tuple[str, str]], namespace: str) -> str:
    lines = [RECORDS_HEADER]
    for fqdn, ip in records:
        lines.append("\t".join([ip, fqdn, *search_aliases(fqdn, namespace)]) + "\n")
    return "".join(lines)


def rewrite_in_place(path: os.PathLike[str] | str, text: str) -> bool:
    """Write ``text`` into the file at ``path`` keeping its inode (a bind mount of a file pins
    the inode: replacing the file would leave the pod with the old one). The new bytes go in with
    one ``pwrite`` at offset 0 and the file never shrinks: a shorter text is padded with a comment
    line, so a concurrent reader never sees an empty or truncated file. Returns whether the file
    changed."""
    data = text.encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if len(data) < size:
            gap = size - len(data)
            data += b"\n" if gap == 1 else b"#" + b" " * (gap - 2) + b"\n"
        if size == len(data) and os.pread(fd, size, 0) == data:
            return False
        os.pwrite(fd, data, 0)
        return True
    finally:
        os.close(fd)


__all__ = [
    "CLUSTER_DOMAIN",
    "ETC_HOSTS",
    "host_aliases_entries",
    "host_network_hosts_content",
    "kubelet_hosts_content",
    "managed_hosts_content",
    "pod_hostname_and_domain",
    "records_content",
    "rewrite_in_place",
    "search_aliases",
    "service_records",
    "uses_cluster_dns",
]
