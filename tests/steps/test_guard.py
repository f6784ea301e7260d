"""The SSRF guard: step URLs reach public addresses only, in whatever spelling they come."""

from __future__ import annotations

import ipaddress
import socket
import sys

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conveyor.exceptions import ConfigError
from conveyor.steps.guard import BlockedDestination, Guard, parse_ipv4

# Written out here, apart from the module's table, so the tests do not grade themselves.
NOT_PUBLIC_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
V4_NETWORKS = [ipaddress.IPv4Network(n) for n in NOT_PUBLIC_V4]

BLOCKED = [
    # loopback, in the spellings inet_aton reads
    "http://127.0.0.1/",
    "http://127.0.0.1.:8080/x",
    "http://0x7f000001/",
    "http://0X7F000001/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://0x7f.1/",
    "http://0x7f.0.0.0x1/",
    "http://0000177.0000.0000.0001/",
    "https://127.255.255.254/",
    # unspecified, private, shared, link-local, metadata
    "http://0/",
    "http://0.0.0.0/",
    "http://10.1.2.3/",
    "http://012.1.2.3/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://3232235777/",
    "http://100.64.0.1/",
    "http://100.100.100.200/latest/meta-data",
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://169.254.43518/",
    "http://192.0.0.192/",
    # reserved, documentation, benchmarking, multicast, broadcast
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://224.0.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://203.0.113.7/",
    # IPv6, and IPv4 carried inside IPv6
    "http://[::1]/",
    "http://[::]/",
    "http://[0:0:0:0:0:0:0:1]:443/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",
    "http://[::ffff:a00:1]/",
    "http://[64:ff9b::127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "http://[2001::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://[100::1]/",
    "http://[::ffff:0:127.0.0.1]/",
    # names that only ever mean this machine or its private network
    "http://localhost/",
    "http://LOCALHOST:8000/",
    "http://localhost./",
    "http://api.localhost/",
    "http://localhost.localdomain/",
    "http://metadata/computeMetadata/v1/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://instance-data/latest/",
    "http://printer.local/",
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",  # full-width "localhost"
    "http://①②⑦.0.0.1/",
    "http://127。0。0。1/",
]

PASSES = [
    "http://example.com/",
    "https://api.example.com:8443/v1/things?x=1#frag",
    "HTTPS://EXAMPLE.COM/",
    "http://example.com./",
    "http://8.8.8.8/",
    "http://134744072/",
    "http://0x08080808/",
    "http://1.1.1.1:80/",
    "http://[2606:4700:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::808:808]/",
    "http://[2002:808:808::1]/",
    "http://1e100.net/",
    "http://cafe.de/",
    "http://xn--bcher-kva.example/",
    "http://bücher.example/",
    "http://_dmarc.example.com/",
    "http://service-1.example/",
    "http://172.32.0.1/",
    "http://100.128.0.1/",
    "http://169.255.0.1/",
]

MALFORMED = [
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
    "//example.com/",
    "example.com/path",
    "http:///path",
    "http://",
    "http://user:pass@example.com/",
    "http://@example.com/",
    "http://example.com@127.0.0.1/",
    "http://example.com\\@127.0.0.1/",
    "http://exa mple.com/",
    "http://127.0.0.\n1/",
    "http://\t127.0.0.1/",
    "http://%31%32%37.0.0.1/",
    "http://127.0.0.1%2f/",
    "http://[::1/",
    "http://[127.0.0.1]/",
    "http://[v1.fe]/",
    "http://[::1]x/",
    "http://example.com:99999/",
    "http://example.com:0/",
    "http://example.com:http/",
    "http://256.0.0.1/",
    "http://1.2.3.4.5/",
    "http://0x/",
    "http://0x100000000/",
    "http://4294967296/",
    "http://08.0.0.1/",
    "http://7f000001/",
    "http://example.123/",
    "http://a..b/",
    "http://.example.com/",
    "http://ex!mple.com/",
    "http://" + "a" * 64 + ".example/",
]


@pytest.mark.parametrize("url", BLOCKED)
def test_blocked_urls_are_refused_with_the_reason(url: str) -> None:
    with pytest.raises(BlockedDestination, match="allow it with CONVEYOR_HTTP_ALLOW"):
        Guard().check_url(url)


@pytest.mark.parametrize("url", PASSES)
def test_public_urls_pass(url: str) -> None:
    Guard().check_url(url)


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_urls_are_value_errors_not_names(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        Guard().check_url(url)
    assert not isinstance(caught.value, BlockedDestination)


def test_the_message_names_the_address_and_why() -> None:
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_url("http://127.0.0.1/")
    assert str(caught.value) == (
        "127.0.0.1 is a loopback address; allow it with CONVEYOR_HTTP_ALLOW"
    )
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_url("http://0x7f000001/")
    assert str(caught.value).startswith("0x7f000001 means 127.0.0.1, a loopback address")
    assert (caught.value.host, caught.value.address) == ("0x7f000001", "127.0.0.1")


def test_malformed_messages_name_the_problem() -> None:
    cases = {
        "ftp://example.com/": "scheme",
        "http://user:pass@example.com/": "credentials",
        "http:///x": "no host",
        "http://256.1.1.1/": "IPv4",
        "http://%6c%6fcalhost/": "percent-encoded",
    }
    for url, words in cases.items():
        with pytest.raises(ValueError, match=words):
            Guard().check_url(url)


# ---------------------------------------------------------------------------
# Every address of a blocked network, in every spelling inet_aton reads.
# ---------------------------------------------------------------------------
def _number(value: int, radix: str) -> str:
    if radix == "hex":
        return f"0x{value:x}"
    if radix == "HEX":
        return f"0X{value:X}"
    if radix == "oct":
        return f"0{value:o}"
    if radix == "oct0":
        return f"000{value:o}"
    return str(value)


@st.composite
def spellings(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """``address`` as one to four parts, each in its own radix, maybe with a trailing dot."""
    octets = address.packed
    count = draw(st.integers(1, 4))
    head = list(octets[: count - 1])
    last = int.from_bytes(octets[count - 1 :], "big")
    radixes = st.sampled_from(["dec", "hex", "HEX", "oct", "oct0"])
    text = ".".join(_number(value, draw(radixes)) for value in [*head, last])
    return text + draw(st.sampled_from(["", "."]))


def addresses_in(networks: list[ipaddress.IPv4Network]) -> st.SearchStrategy[ipaddress.IPv4Address]:
    return st.sampled_from(networks).flatmap(
        lambda n: st.integers(0, n.num_addresses - 1).map(lambda i: n[i])
    )


@given(data=st.data(), address=addresses_in(V4_NETWORKS))
def test_every_address_of_a_blocked_network_is_blocked_in_any_spelling(
    data: st.DataObject, address: ipaddress.IPv4Address
) -> None:
    spelled = data.draw(spellings(address))
    assert parse_ipv4(spelled.removesuffix(".")) == address
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_url(f"http://{spelled}/x")
    assert caught.value.address == str(address)
    with pytest.raises(BlockedDestination):
        Guard().check_address("example.com", str(address))


@given(data=st.data(), address=addresses_in(V4_NETWORKS))
def test_a_blocked_ipv4_address_is_blocked_inside_ipv6(
    data: st.DataObject, address: ipaddress.IPv4Address
) -> None:
    n = int(address)
    wrapped = data.draw(
        st.sampled_from(
            [
                f"::ffff:{address}",
                f"0:0:0:0:0:ffff:{address}",
                str(ipaddress.IPv6Address((0xFFFF << 32) | n)),
                f"64:ff9b::{address}",
                str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)),
            ]
            + ([f"::{address}"] if n > 1 else [])
        )
    )
    with pytest.raises(BlockedDestination):
        Guard().check_url(f"http://[{wrapped}]/")
    with pytest.raises(BlockedDestination):
        Guard().check_address("example.com", wrapped)


def _public_v4() -> list[ipaddress.IPv4Network]:
    """The networks left of 0.0.0.0/0 once every non-public one is cut out."""
    left = [ipaddress.IPv4Network("0.0.0.0/0")]
    for blocked in V4_NETWORKS:
        left = [
            part
            for network in left
            for part in (
                network.address_exclude(blocked) if blocked.subnet_of(network) else [network]
            )
        ]
    return left


PUBLIC_V4 = _public_v4()


def test_the_public_networks_are_what_is_left() -> None:
    total = sum(n.num_addresses for n in PUBLIC_V4)
    assert total + sum(n.num_addresses for n in V4_NETWORKS) == 2**32


@given(data=st.data(), address=addresses_in(PUBLIC_V4))
def test_every_public_ipv4_address_passes_in_any_spelling(
    data: st.DataObject, address: ipaddress.IPv4Address
) -> None:
    Guard().check_url(f"http://{data.draw(spellings(address))}/")
    Guard().check_url(f"http://[::ffff:{address}]/")
    Guard().check_address("example.com", str(address))


@given(st.integers(0x2000 << 112, (0x4000 << 112) - 1).map(ipaddress.IPv6Address))
def test_global_unicast_ipv6_passes_outside_the_special_blocks(
    address: ipaddress.IPv6Address,
) -> None:
    special = ["2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20"]
    assume(not any(address in ipaddress.IPv6Network(n) for n in special))
    Guard().check_url(f"http://[{address}]/")


@given(st.integers(0, 2**96 - 1))
def test_teredo_is_blocked_whatever_it_carries(low: int) -> None:
    address = ipaddress.IPv6Address((0x20010000 << 96) | low)
    with pytest.raises(BlockedDestination, match="Teredo"):
        Guard().check_address("example.com", str(address))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's inet_aton")
@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=24))
def test_parse_ipv4_reads_what_the_c_library_reads(text: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    assert parse_ipv4(text) == expected


# ---------------------------------------------------------------------------
# Connect time.
# ---------------------------------------------------------------------------
def test_check_address_judges_the_resolved_address() -> None:
    guard = Guard()
    guard.check_address("example.com", "93.184.216.34")
    guard.check_address("example.com", "2606:2800:220:1::1")
    with pytest.raises(BlockedDestination) as caught:
        guard.check_address("rebound.example", "10.0.0.5")
    assert str(caught.value) == (
        "rebound.example means 10.0.0.5, a private address; allow it with CONVEYOR_HTTP_ALLOW"
    )
    with pytest.raises(BlockedDestination):
        guard.check_address("example.com", "fe80::1%eth0")
    with pytest.raises(ValueError, match="not an IP address"):
        guard.check_address("example.com", "example.com")
    with pytest.raises(ValueError, match="not an IP address"):
        guard.check_address("example.com", "0x7f000001")


# ---------------------------------------------------------------------------
# CONVEYOR_HTTP_ALLOW.
# ---------------------------------------------------------------------------
def test_allowed_networks_and_addresses_pass() -> None:
    guard = Guard(["10.0.0.0/8", "::1/128", "192.168.1.10", "fd00::5"])
    guard.check_url("http://10.2.3.4/")
    guard.check_url("http://0xa020304/")
    guard.check_url("http://[::ffff:10.2.3.4]/")
    guard.check_url("http://[::1]:8080/")
    guard.check_url("http://192.168.1.10/")
    guard.check_address("svc.example", "10.9.9.9")
    guard.check_address("svc.example", "fd00::5")
    with pytest.raises(BlockedDestination):
        guard.check_url("http://192.168.1.11/")
    with pytest.raises(BlockedDestination):
        guard.check_url("http://127.0.0.1/")


def test_allowed_host_names_pass_by_name_and_at_connect_time() -> None:
    guard = Guard(["localhost", "*.corp.example", "metadata.google.internal"])
    guard.check_url("http://localhost:8000/")
    guard.check_url("http://LOCALHOST./")
    guard.check_url("http://metadata.google.internal/")
    guard.check_address("localhost", "127.0.0.1")
    guard.check_address("billing.corp.example", "10.0.0.7")
    guard.check_address("a.b.corp.example.", "10.0.0.7")
    with pytest.raises(BlockedDestination):
        guard.check_address("corp.example", "10.0.0.7")
    with pytest.raises(BlockedDestination):
        guard.check_address("evilcorp.example", "10.0.0.7")
    with pytest.raises(BlockedDestination):
        guard.check_url("http://api.localhost/")
    # A name allows what it resolves to, not the address written out.
    with pytest.raises(BlockedDestination):
        guard.check_url("http://127.0.0.1/")


def test_from_env_reads_a_comma_separated_list() -> None:
    guard = Guard.from_env({"CONVEYOR_HTTP_ALLOW": " 10.0.0.0/8 , *.corp.example,,"})
    guard.check_address("x.corp.example", "192.168.0.1")
    guard.check_url("http://10.0.0.1/")
    for environ in ({}, {"CONVEYOR_HTTP_ALLOW": ""}):
        with pytest.raises(BlockedDestination):
            Guard.from_env(environ).check_url("http://10.0.0.1/")


@pytest.mark.parametrize(
    "entry",
    ["10.0.0.1/8", "10.0.0.0/33", "::1/129", "10.1", "0x0a000001", "*.10.0.0.1", "ex ample", ""],
)
def test_a_bad_allow_entry_is_a_config_error_naming_it(entry: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Guard([entry])
    assert caught.value.field == "CONVEYOR_HTTP_ALLOW"
    if entry:
        assert repr(entry) in str(caught.value)
