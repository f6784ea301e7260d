"""The SSRF guard: HTTP steps may only reach public addresses, unless an operator allows more.

A job's steps come from API clients, and the worker sends them from inside the operator's
network, so a step URL must not be a way to reach the worker's loopback, the cloud metadata
service or the private network behind it. The guard checks twice:

1. :meth:`Guard.check_url` at submit time, without DNS: the URL's shape, and its host when the
   host is an IP literal or a known-internal name;
2. :meth:`Guard.check_address` at connect time, after DNS, with the address the socket is about
   to connect to. This is the check that counts: a public-looking name can resolve to 10.0.0.5
   (or be re-bound to it between two look-ups), so the worker must call it for every address it
   connects to, redirects included.

URL rules (:meth:`Guard.check_url` raises :class:`ValueError` naming the problem):

- the scheme is ``http`` or ``https``; a host is present; no ``user:pass@`` (credentials go in
  headers, where they are stored sealed, not in URLs that end up in logs);
- no whitespace or control characters anywhere: :func:`urllib.parse.urlsplit` silently drops
  tabs and newlines, and another parser that does not would see a different host;
- the host holds only letters, digits, ``-``, ``_`` and dots, or is an IPv6 literal in brackets
  (a zone id such as ``%25eth0`` is allowed and ignored). Percent-encoded hosts are rejected, not
  decoded: clients differ in whether they decode them. Non-ASCII names are converted with IDNA
  first (which applies NFKC), so full-width digits or dots are judged as the ASCII they become.

How a host is read:

- a bracketed host is an IPv6 address (:mod:`ipaddress` rules; IPvFuture is rejected);
- a host is an IPv4 address when its last label is numeric (decimal, or ``0x`` hex) or when all
  of its labels are digits / hex digits starting with a digit (``7f000001``). It is then read as
  the C library's ``inet_aton`` reads it, never passed on as a name: one to four parts, each
  decimal, octal (leading ``0``) or hex (``0x``); the last part fills the remaining bytes, so
  ``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1`` and ``017700000001`` all mean
  127.0.0.1. One trailing dot is dropped first (``127.0.0.1.``). Such a host that is not a valid
  address is rejected, not treated as a name;
- any other host is a name. These names are blocked without DNS because they only ever mean
  this machine or its private network: ``localhost``, ``*.localhost`` (RFC 6761),
  ``localhost.localdomain``, ``*.local`` (mDNS), ``*.internal`` (reserved for private use; it
  holds ``metadata.google.internal``), and ``metadata`` / ``instance-data`` (the cloud metadata
  services' short names). Every other name passes until :meth:`Guard.check_address`.

Which addresses are public is decided by an explicit table (:data:`BLOCKED_NETWORKS`), not by
``ipaddress``' ``is_global`` alone, whose answers have changed between Python versions. Not
public: unspecified, loopback, private, shared (CGNAT), link-local, cloud metadata, IETF
protocol assignments, documentation, benchmarking, multicast, reserved and broadcast ranges, and
for IPv6 everything outside 2000::/3 (global unicast). IPv6 addresses that carry an IPv4 address
are judged by it: IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::/96`` and 6to4 ``2002::/16``. Teredo (``2001::/32``) is blocked outright: where it
leads depends on a relay, not on the address.

Allowing more (``CONVEYOR_HTTP_ALLOW``, comma-separated):

- networks (``10.0.0.0/8``, ``::1/128``) and single addresses, in strict notation: an address is
  allowed when it, or the IPv4 address it carries, is inside one of them;
- host names, exact (``internal.example``) or a wildcard for every name below a domain
  (``*.corp.example``, which does not match ``corp.example`` itself). An allowed name may
  resolve to any address: the operator vouches for it, DNS included.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from conveyor.exceptions import ConfigError

__all__ = [
    "BLOCKED_NETWORKS",
    "INTERNAL_NAMES",
    "BlockedDestination",
    "Guard",
    "blocked_reason",
    "embedded_ipv4",
    "parse_ipv4",
]

ENV = "CONVEYOR_HTTP_ALLOW"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _table(*rows: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), reason) for cidr, reason in rows)


# The first matching row gives the reason, so narrow rows come before the ranges that hold them.
BLOCKED_NETWORKS: tuple[tuple[Network, str], ...] = _table(
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.100.100.200/32", "a cloud metadata address"),
    ("100.64.0.0/10", "a shared (CGNAT) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.169.254/32", "a cloud metadata address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.192/32", "a cloud metadata address"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo address"),
    ("2001:2::/48", "a benchmarking address"),
    ("2001:db8::/32", "a documentation address"),
    ("2001::/23", "an IETF protocol assignment address"),
    ("3fff::/20", "a documentation address"),
    ("fd00:ec2::254/128", "a cloud metadata address"),
    ("fc00::/7", "a private (unique local) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)

_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")

# Exact names, and "*.domain" for every name below the domain (not the domain itself).
INTERNAL_NAMES: tuple[str, ...] = (
    "localhost",
    "*.localhost",
    "localhost.localdomain",
    "*.local",
    "*.internal",
    "metadata",
    "instance-data",
)

_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_NUMERIC_LAST = re.compile(r"[0-9]+|0x[0-9a-f]*")
_NUMERIC_ANY = re.compile(r"[0-9][0-9a-fx]*")
_ZONE = re.compile(r"[A-Za-z0-9._~%-]+")
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


class BlockedDestination(ValueError):
    """A step URL or address the guard refuses. The message says what and why.

    Attributes:
        host: the host as written in the URL.
        address: the address it means or resolved to, when there is one.
        reason: why it is not public, e.g. ``"a loopback address"``.
    """

    def __init__(self, host: str, address: str | None, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        if address is None or address == host:
            what = f"{host} is {reason}"
        else:
            what = f"{host} means {address}, {reason}"
        super().__init__(f"{what}; allow it with {ENV}")


def parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """Read ``text`` as ``inet_aton`` does; None when it is not such an address.

    One to four dot-separated parts, each decimal, octal (leading ``0``) or hex (``0x``); every
    part but the last is one byte, the last fills the remaining bytes. No trailing dot, no
    signs, no spaces: callers strip one trailing dot of a host first.
    """
    parts = text.lower().split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _ipv4_part(part)
        if value is None:
            return None
        values.append(value)
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _ipv4_part(part: str) -> int | None:
    if part.startswith("0x"):
        digits, base = part[2:], 16
    elif part.startswith("0") and len(part) > 1:
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    # int() alone would accept "_", "+" and spaces, which inet_aton does not.
    allowed = "0123456789abcdef"[:base]
    if not digits or any(c not in allowed for c in digits):
        return None
    value = int(digits, base)
    return value if value <= 0xFFFFFFFF else None


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: Address) -> str | None:
    """Why ``address`` is not public (e.g. ``"a loopback address"``), or None when it is."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = blocked_reason(inner)
        return None if reason is None else f"{reason} (it carries {inner})"
    for network, reason in BLOCKED_NETWORKS:
        if address.version == network.version and address in network:
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "a reserved address (outside global unicast 2000::/3)"
    return None


def _ip(text: str) -> Address:
    """A strictly written address, with any IPv6 zone id dropped (it does not change where)."""
    return ipaddress.ip_address(text.partition("%")[0])


class Guard:
    """Decides which destinations HTTP steps may reach. See the module docstring for the rules.

    Args:
        allow: networks, addresses or host names (``*.domain`` for every name below it) that
            may be reached although they are not public.

    Raises:
        ConfigError: an entry is neither a network, an address nor a host name.
    """

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self._networks: list[Network] = []
        self._names: set[str] = set()
        self._domains: set[str] = set()
        for entry in allow:
            self._add(entry)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Guard:
        """A guard allowing what ``CONVEYOR_HTTP_ALLOW`` lists (comma-separated; may be unset)."""
        entries = [e.strip() for e in environ.get(ENV, "").split(",")]
        return cls(e for e in entries if e)

    def _add(self, entry: str) -> None:
        text = entry.strip()
        if not text:
            raise ConfigError(ENV, "empty entry")
        if "/" in text or ":" in text:
            try:
                self._networks.append(ipaddress.ip_network(text, strict=True))
            except ValueError as exc:
                raise ConfigError(ENV, f"{entry!r} is not a network ({exc})") from None
            return
        wildcard = text.startswith("*.")
        name = text[2:] if wildcard else text
        try:
            host = _read_host(name)
        except ValueError as exc:
            raise ConfigError(ENV, f"{entry!r} is not an address or host name ({exc})") from None
        if not isinstance(host, str):
            if wildcard:
                raise ConfigError(ENV, f"{entry!r}: a wildcard needs a domain name")
            if str(host) != text:
                # An entry is configuration, not input: odd spellings there are more likely typos.
                raise ConfigError(ENV, f"{entry!r}: write the address as {host}")
            self._networks.append(ipaddress.ip_network(host))
        elif wildcard:
            self._domains.add(host)
        else:
            self._names.add(host)

    def is_allowed_address(self, address: Address) -> bool:
        """True when ``address``, or the IPv4 address it carries, is in an allowed network."""
        candidates = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        return any(a.version == n.version and a in n for a in candidates for n in self._networks)

    def is_allowed_host(self, host: str) -> bool:
        """True when the host name ``host`` is allowed by name (exactly or by a wildcard)."""
        try:
            name = _normalize_name(host)
        except ValueError:
            return False
        return name in self._names or any(_below(name, d) for d in self._domains)

    def check_url(self, url: str) -> None:
        """Check a step URL without DNS. See the module docstring for the rules.

        Raises:
            ValueError: the URL is malformed (the message names the problem).
            BlockedDestination: its host is a non-public address or an internal name, and not
                allowed.
        """
        host_text = _url_host(url)
        host = _read_host(host_text)
        if isinstance(host, str):
            reason = _internal_name(host)
            if reason is not None and not self.is_allowed_host(host):
                raise BlockedDestination(host_text, None, reason)
            return
        self._check(host_text, host)

    def check_address(self, host: str, address: str) -> None:
        """Check the address a socket is about to connect to, after resolving ``host``.

        Raises:
            ValueError: ``address`` is not an IP address.
            BlockedDestination: it is not public, not in an allowed network, and ``host`` is
                not an allowed name.
        """
        try:
            ip = _ip(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IP address") from None
        if self.is_allowed_host(host):
            return
        self._check(host.strip("[]"), ip)

    def _check(self, host: str, ip: Address) -> None:
        reason = blocked_reason(ip)
        if reason is not None and not self.is_allowed_address(ip):
            raise BlockedDestination(host, str(ip), reason)

    def __repr__(self) -> str:
        allowed = [str(n) for n in self._networks]
        allowed += sorted(self._names) + sorted(f"*.{d}" for d in self._domains)
        return f"Guard(allow={allowed!r})"


def _url_host(url: str) -> str:
    """The host part of ``url`` as written (brackets kept), after the URL-level checks."""
    if not isinstance(url, str):
        raise ValueError(f"URL must be a string, not {type(url).__name__}")
    if _UNSAFE.search(url):
        raise ValueError("URL contains whitespace or control characters")
    parts = urlsplit(url)  # raises ValueError on bad brackets
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, not {parts.scheme or 'missing'!r}")
    netloc = parts.netloc
    if not netloc:
        raise ValueError("URL has no host")
    if "@" in netloc:
        raise ValueError("URL must not carry credentials (user:pass@); send them in headers")
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        host += "]"
        if rest and not rest.startswith(":"):
            raise ValueError(f"URL host {netloc!r} has text after the closing bracket")
    else:
        host = netloc.partition(":")[0]
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"URL port is not valid ({exc})") from None
    if port == 0:
        raise ValueError("URL port must be between 1 and 65535")
    if host in ("", "[]"):
        raise ValueError("URL has no host")
    return host


def _read_host(text: str) -> Address | str:
    """An address when ``text`` is an IP literal in any spelling, else the normalized name."""
    if text.startswith("["):
        inside = text[1:-1] if text.endswith("]") else text[1:]
        address, percent, zone = inside.partition("%")
        if percent and not _ZONE.fullmatch(zone):
            raise ValueError(f"host {text!r} has a malformed zone id")
        try:
            return ipaddress.IPv6Address(address)
        except ValueError:
            raise ValueError(f"host {text!r} is not an IPv6 address") from None
    name = _normalize_name(text)
    labels = name.split(".")
    if _NUMERIC_LAST.fullmatch(labels[-1]) or all(_NUMERIC_ANY.fullmatch(x) for x in labels):
        ipv4 = parse_ipv4(name)
        if ipv4 is None:
            raise ValueError(f"host {text!r} looks like an IPv4 address but is not a valid one")
        return ipv4
    return name


def _normalize_name(text: str) -> str:
    """Lower case, IDNA for non-ASCII, one trailing dot dropped; ValueError when malformed."""
    name = text
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"host {text!r} is not a valid international name") from None
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if "%" in name:
        raise ValueError(f"host {text!r} is percent-encoded; write it plainly")
    if not name or len(name) > 253:
        raise ValueError(f"host {text!r} must be 1 to 253 characters")
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"host {text!r} must be dot-separated labels of letters, digits, '-' and '_'"
            )
    return name


def _below(name: str, domain: str) -> bool:
    return name.endswith("." + domain)


def _internal_name(name: str) -> str | None:
    for pattern in INTERNAL_NAMES:
        if pattern.startswith("*."):
            if _below(name, pattern[2:]):
                return "an internal host name"
        elif name == pattern:
            return "an internal host name"
    return None
