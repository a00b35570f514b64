"""How an address becomes a gRPC target: the resolver, load balancing and whether TLS is
used."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Optional

#: Service config for DNS targets: spread calls over every address the name resolves to,
#: so a Kubernetes headless service or several A records share the load.
ROUND_ROBIN_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


@dataclass(frozen=True)
class Target:
    """A resolved address: the gRPC target string, the host (for TLS and loopback
    decisions), whether TLS is used, and the service config (None: gRPC's default)."""

    target: str
    host: str
    tls: bool
    service_config: Optional[str]


def is_loopback(host: str) -> bool:
    """Whether host is localhost or a loopback IP address."""
    h = host.strip("[]").lower()
    if h in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError(f"address {hostport!r}: unclosed '['")
        host, rest = hostport[1:end], hostport[end + 1:]
        if not rest.startswith(":") or not rest[1:]:
            raise ValueError(f"address {hostport!r}: want [host]:port")
        return host, rest[1:]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port or ":" in host:
        raise ValueError(f"address {hostport!r}: want host:port (IPv6 as [addr]:port)")
    return host, port


def resolve(address: str, tls: Optional[bool], insecure: bool) -> Target:
    """Resolves address ("host:port", "[v6]:port", or a gRPC target with a scheme such as
    "dns:///host:port" or "unix:/path") into a Target.

    TLS: tls=None picks plaintext for loopback hosts and unix sockets and TLS otherwise.
    Plaintext to any other host must be asked for with insecure=True (tls=False alone is
    refused, so a forgotten setting never sends credentials in the clear).
    DNS names get the "dns:///" target with round_robin load balancing.
    """
    address = address.strip()
    if not address:
        raise ValueError("address is empty")
    service_config: Optional[str] = None
    if address.startswith(("unix:", "unix-abstract:")):
        host, target = "localhost", address
    elif "://" in address or address.startswith(("dns:", "ipv4:", "ipv6:")):
        scheme, _, rest = address.partition(":")
        rest = rest.lstrip("/")
        if scheme == "dns" and "/" in rest:  # dns://authority/host:port
            rest = rest.split("/", 1)[1]
        first = rest.split(",")[0]
        host = _split_host_port(first)[0] if ":" in first else first
        target = address
        if scheme == "dns":
            service_config = ROUND_ROBIN_CONFIG
    else:
        host, port = _split_host_port(address)
        try:
            ipaddress.ip_address(host)
            target = address
        except ValueError:
            target = f"dns:///{host}:{port}"
            service_config = ROUND_ROBIN_CONFIG
    local = is_loopback(host) or address.startswith(("unix:", "unix-abstract:"))
    if tls is None:
        use_tls = not local and not insecure
    else:
        use_tls = tls
    if use_tls and insecure:
        raise ValueError("tls=True and insecure=True contradict each other")
    if not use_tls and not local and not insecure:
        raise ValueError(f"refusing plaintext to {host}, which is not a loopback address: "
                         "use TLS (the default), or pass insecure=True if this is really wanted")
    return Target(target=target, host=host, tls=use_tls, service_config=service_config)
