"""Authentication, table-driven, through the public Core API
(``authenticate_client`` then ``resolve_client``), spec/repository.md §1.6.

Every global auth mode x password (the client's own, the global one, wrong, missing)
x certificate (for this client, for another client, none) x how the client
connects (known by address, by name, by uuid, unknown, floating, alias address,
reverse DNS, secure, a certificate from someone else's address).
"""
import socket

import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugin import MetadataConsistencyError
from bcfg2_cherry.server.core import ClientAddress
from bcfg2_cherry.server.errors import Fault
from bcfg2_cherry.xml import parse_repo_file
from tests.support.cores import TestNetworkCore




GROUPS = '<Groups><Group name="p" profile="true" public="true" default="true"/></Groups>'

CLIENTS = """<Clients>
  <Client name="known.example.com" profile="p" address="10.0.0.1" password="known-pw"
          uuid="Known-UUID"/>
  <Client name="other.example.com" profile="p" address="10.0.0.9" password="other-pw"/>
  <Client name="secure.example.com" profile="p" address="10.0.0.2" password="secure-pw"
          secure="true"/>
  <Client name="float.example.com" profile="p" password="float-pw" floating="true"/>
  <Client name="aliased.example.com" profile="p" password="aliased-pw">
    <Alias name="Alias.example.com" address="10.0.0.3"/>
  </Client>
  <Client name="dns.example.com" profile="p" password="dns-pw"/>
</Clients>
"""

GLOBAL = "global-pw"

#: reverse DNS of the test (everything else fails like an unknown address)
DNS = {"203.0.113.5": "DNS.Example.COM", "203.0.113.6": "ALIAS.example.com"}


def cert_for(name):
    """A certificate as ssl.getpeercert() returns it."""
    return {"subject": ((("organizationName", "test"),), (("commonName", name),)),
            "subjectAltName": (("DNS", name),)}


#: situation -> (user, ip, this client's name, its own password, cert CN for "this")
SITUATIONS = {
    "known-address": ("root", "10.0.0.1", "known.example.com", "known-pw",
                      "known.example.com"),
    "known-name": ("Known.Example.COM", "192.0.2.99", "known.example.com", "known-pw",
                   "known.example.com"),
    "known-uuid": ("known-uuid", "192.0.2.99", "known.example.com", "known-pw",
                   "known.example.com"),
    "unknown-name": ("stranger.example.com", "192.0.2.50", "stranger.example.com",
                     "stranger-pw", "stranger.example.com"),
    "unknown-address": ("root", "192.0.2.77", "stranger.example.com", "stranger-pw",
                        "stranger.example.com"),
    "floating-foreign": ("root", "198.51.100.7", "float.example.com", "float-pw",
                         "float.example.com"),
    "floating-name": ("float.example.com", "198.51.100.7", "float.example.com",
                      "float-pw", "float.example.com"),
    "alias-address": ("root", "10.0.0.3", "aliased.example.com", "aliased-pw",
                      "alias.example.com"),
    "dns": ("root", "203.0.113.5", "dns.example.com", "dns-pw", "dns.example.com"),
    "dns-alias": ("root", "203.0.113.6", "aliased.example.com", "aliased-pw",
                  "aliased.example.com"),
    "secure-address": ("root", "10.0.0.2", "secure.example.com", "secure-pw",
                       "secure.example.com"),
    "cert-from-wrong-address": ("known.example.com", "10.0.0.3", "known.example.com",
                                "known-pw", "known.example.com"),
}

NOBODY = "NNNN NNNN NNNN"

#: (situation, certificate) -> (who is authenticated when allowed, expectations)
#: expectations: one letter per password (own, global, wrong, missing) for each mode
#: (cert | cert+password | bootstrap); Y = allowed, N = denied
TABLE = {
    ("known-address", "this"): (None, "YYYY YYNN YYYY"),
    ("known-address", "none"): (None, "NNNN YYNN YYNN"),
    ("known-address", "other"): (None, NOBODY),
    # a certificate for a floating client is accepted from anywhere: the certificate
    # wins over the address, so this authenticates float, not known
    ("known-address", "floating-other"): ("float.example.com", "YYYY NYNN YYYY"),
    # a certificate must come from its client's address; a user name need not
    ("known-name", "this"): (None, NOBODY),
    ("known-name", "none"): (None, "NNNN YYNN YYNN"),
    ("known-name", "other"): (None, NOBODY),
    ("known-name", "floating-other"): ("float.example.com", "YYYY NYNN YYYY"),
    ("known-uuid", "this"): (None, NOBODY),
    ("known-uuid", "none"): (None, "NNNN YYNN YYNN"),
    ("known-uuid", "other"): (None, NOBODY),
    # an unknown name passes with the global password (and is then created)
    ("unknown-name", "this"): (None, NOBODY),
    ("unknown-name", "none"): (None, "NNNN NYNN NYNN"),
    ("unknown-name", "other"): (None, NOBODY),
    ("unknown-address", "this"): (None, NOBODY),
    ("unknown-address", "none"): (None, NOBODY),
    ("unknown-address", "other"): (None, NOBODY),
    ("floating-foreign", "this"): (None, "YYYY YYNN YYYY"),
    ("floating-foreign", "none"): (None, NOBODY),
    ("floating-foreign", "other"): (None, NOBODY),
    ("floating-name", "this"): (None, "YYYY YYNN YYYY"),
    ("floating-name", "none"): (None, "NNNN YYNN YYNN"),
    ("floating-name", "other"): (None, NOBODY),
    ("alias-address", "this"): (None, "YYYY YYNN YYYY"),
    ("alias-address", "none"): (None, "NNNN YYNN YYNN"),
    ("alias-address", "other"): (None, NOBODY),
    ("dns", "this"): (None, "YYYY YYNN YYYY"),
    ("dns", "none"): (None, "NNNN YYNN YYNN"),
    ("dns", "other"): (None, NOBODY),
    ("dns-alias", "this"): (None, "YYYY YYNN YYYY"),
    ("dns-alias", "none"): (None, "NNNN YYNN YYNN"),
    ("dns-alias", "other"): (None, NOBODY),
    # secure: only its own password, never the global one
    ("secure-address", "this"): (None, "YYYY YNNN YYYY"),
    ("secure-address", "none"): (None, "NNNN YNNN YNNN"),
    ("secure-address", "other"): (None, NOBODY),
    ("cert-from-wrong-address", "this"): (None, NOBODY),
    ("cert-from-wrong-address", "none"): (None, "NNNN YYNN YYNN"),
    ("cert-from-wrong-address", "other"): (None, NOBODY),
}

MODES = ("cert", "cert+password", "bootstrap")
PASSWORDS = ("own", "global", "wrong", "missing")


def make_core(tmp_path, mode, clients=CLIENTS, groups=GROUPS, password=GLOBAL):
    repo = tmp_path / "repo"
    (repo / "Metadata").mkdir(parents=True)
    (repo / "Metadata" / "groups.xml").write_text(groups)
    (repo / "Metadata" / "clients.xml").write_text(clients)
    conf = tmp_path / "bcfg2.conf"
    conf.write_text(
        "[server]\nrepository = %s\nplugins = Metadata\nfilemonitor = pseudo\n"
        "[communication]\n%sauthentication = %s\n"
        "ca = %s\n" % (repo, "password = %s\n" % password if password else "", mode,
                       tmp_path / "ca.pem"))
    core = TestNetworkCore(Settings(str(conf)))
    core.load()
    return core


@pytest.fixture(scope="module")
def dns():
    """Reverse DNS from DNS (no network), for the whole module."""
    mp = pytest.MonkeyPatch()

    def gethostbyaddr(ip):
        if ip in DNS:
            return DNS[ip], [], [ip]
        raise socket.herror(1, "Unknown host")
    mp.setattr(socket, "gethostbyaddr", gethostbyaddr)
    yield DNS
    mp.undo()


@pytest.fixture(scope="module")
def core_for(tmp_path_factory, dns):
    """``core_for(mode)``: one core per global auth mode, shared by the module."""
    made = {}

    def get(mode):
        if mode not in made:
            made[mode] = make_core(tmp_path_factory.mktemp("auth"), mode)
        return made[mode]
    yield get
    for core in made.values():
        core.shutdown()


def _cases():
    for (situation, certkind), (who, expected) in sorted(TABLE.items()):
        modes = expected.split()
        for mode, letters in zip(MODES, modes):
            for pwkind, letter in zip(PASSWORDS, letters):
                yield situation, certkind, mode, pwkind, letter == "Y", who


CASES = list(_cases())
_ports = iter(range(20000, 60000))


def test_table_is_complete():
    situations = {key[0] for key in TABLE}
    assert situations == set(SITUATIONS)
    for situation in situations:
        assert {"this", "none", "other"} <= {c for s, c in TABLE if s == situation}
    assert len(CASES) == len(TABLE) * len(MODES) * len(PASSWORDS)


@pytest.mark.parametrize(
    "situation,certkind,mode,pwkind,allowed,who", CASES,
    ids=["%s-cert:%s-%s-password:%s" % case[:4] for case in CASES])
def test_authentication(core_for, situation, certkind, mode, pwkind, allowed, who):
    core = core_for(mode)
    user, ip, client, own, cn = SITUATIONS[situation]
    cert = {"this": cert_for(cn), "other": cert_for("other.example.com"),
            "floating-other": cert_for("float.example.com"), "none": None}[certkind]
    password = {"own": own, "global": GLOBAL, "wrong": "wrong-pw",
                "missing": None}[pwkind]
    address = (ip, next(_ports))
    expected = (who or client) if allowed else None
    assert core.authenticate_client(cert, user, password, address) == \
        (allowed, expected)
    if allowed:
        # the identity travels with the call: resolve_client gives that client
        resolved, metadata = core.resolve_client(ClientAddress(address, expected))
        assert resolved == expected
        assert metadata.hostname == expected and metadata.profile == "p"


def test_unknown_client_without_default_group_is_refused_at_metadata(tmp_path, dns):
    core = make_core(tmp_path, "cert+password", groups='<Groups><Group name="p" '
                     'profile="true"/></Groups>')
    try:
        address = ("192.0.2.50", 1234)
        ok, name = core.authenticate_client(None, "stranger.example.com", GLOBAL,
                                            address)
        assert (ok, name) == (True, "stranger.example.com")
        with pytest.raises(Fault, match="no default group"):
            core.resolve_client(ClientAddress(address, name))
        assert "stranger.example.com" not in core.metadata.list_clients()
    finally:
        core.shutdown()


def test_unknown_client_with_default_group_is_created(tmp_path, dns):
    core = make_core(tmp_path, "cert+password")
    try:
        address = ("192.0.2.50", 1234)
        _, name = core.authenticate_client(None, "stranger.example.com", GLOBAL,
                                           address)
        assert core.resolve_client(ClientAddress(address, name))[1].profile == "p"
        root = parse_repo_file(str(tmp_path / "repo/Metadata/clients.xml")).getroot()
        assert [c.get("profile") for c in root.iter("Client")
                if c.get("name") == "stranger.example.com"] == ["p"]
    finally:
        core.shutdown()


def test_per_client_auth_overrides_global(tmp_path, dns):
    clients = CLIENTS.replace('address="10.0.0.1" password="known-pw"',
                              'address="10.0.0.1" password="known-pw" auth="cert"')
    core = make_core(tmp_path, "cert+password", clients=clients)
    try:
        addr = ("10.0.0.1", 1)
        assert core.authenticate_client(None, "root", "known-pw", addr) == (False, None)
        assert core.authenticate_client(cert_for("known.example.com"), "root", None,
                                        addr) == (True, "known.example.com")
        # the others still follow the global cert+password
        assert core.authenticate_client(cert_for("other.example.com"), "root", None,
                                        ("10.0.0.9", 1)) == (False, None)
        assert core.authenticate_client(cert_for("other.example.com"), "root",
                                        "other-pw", ("10.0.0.9", 1)) == \
            (True, "other.example.com")
    finally:
        core.shutdown()


STATS = ('<upload-statistics><Statistics version="2.0" state="clean" total="0" '
         'good="0" revision="-1"/></upload-statistics>')


def test_bootstrap_switches_to_cert_after_statistics(tmp_path, dns):
    clients = CLIENTS.replace('address="10.0.0.1" password="known-pw"',
                              'address="10.0.0.1" password="known-pw" auth="bootstrap"')
    core = make_core(tmp_path, "cert+password", clients=clients)
    try:
        addr = ("10.0.0.1", 1)
        ok, name = core.authenticate_client(None, "root", "known-pw", addr)
        assert (ok, name) == (True, "known.example.com")
        assert core.RecvStats(ClientAddress(addr, name), STATS) is True
        known = next(c for c in parse_repo_file(
            str(tmp_path / "repo/Metadata/clients.xml")).getroot().iter("Client")
            if c.get("name") == "known.example.com")
        assert known.get("auth") == "cert"
        # the in-memory table follows at once
        assert core.authenticate_client(None, "root", "known-pw", addr) == (False, None)
        assert core.authenticate_client(cert_for("known.example.com"), "root", None,
                                        addr) == (True, "known.example.com")
        # non-bootstrap clients are left alone
        _, name = core.authenticate_client(None, "root", "other-pw", ("10.0.0.9", 1))
        core.RecvStats(ClientAddress(("10.0.0.9", 1), name), STATS)
        assert core.authenticate_client(None, "root", "other-pw", ("10.0.0.9", 2)) == \
            (True, "other.example.com")
    finally:
        core.shutdown()


def test_global_bootstrap_writes_cert_for_the_client(tmp_path, dns):
    core = make_core(tmp_path, "bootstrap")
    try:
        addr = ("10.0.0.9", 1)
        ok, name = core.authenticate_client(None, "root", GLOBAL, addr)
        assert ok
        core.RecvStats(ClientAddress(addr, name), STATS)
        assert 'auth="cert"' in (tmp_path / "repo/Metadata/clients.xml").read_text()
        assert core.authenticate_client(None, "root", GLOBAL, addr) == (False, None)
    finally:
        core.shutdown()


def test_no_global_password_and_no_password_never_matches(tmp_path, dns):
    core = make_core(tmp_path, "cert+password", password=None,
                     clients='<Clients><Client name="h" profile="p" address="10.0.0.5"/>'
                             '</Clients>')
    try:
        assert core.authenticate_client(None, "root", None, ("10.0.0.5", 1)) == \
            (False, None)
        assert core.authenticate_client(None, "root", "", ("10.0.0.5", 1)) == \
            (False, None)
    finally:
        core.shutdown()


def test_passwords_with_colons_and_non_ascii(tmp_path, dns):
    core = make_core(tmp_path, "cert+password", password="g:l:ö",
                     clients='<Clients><Client name="h" profile="p" password="ü:x"/>'
                             '</Clients>')
    try:
        assert core.authenticate_client(None, "h", "g:l:ö", ("10.0.0.5", 1))[0]
        assert core.authenticate_client(None, "h", "ü:x", ("10.0.0.5", 1))[0]
        assert not core.authenticate_client(None, "h", "ü", ("10.0.0.5", 1))[0]
    finally:
        core.shutdown()


def test_certificate_names(tmp_path, dns):
    core = make_core(tmp_path, "cert")
    try:
        addr = ("10.0.0.1", 1)
        san_only = {"subject": ((("organizationName", "x"),),),
                    "subjectAltName": (("DNS", "Known.Example.com"),)}
        assert core.authenticate_client(san_only, "root", None, addr) == \
            (True, "known.example.com")
        nothing = {"subject": ((("organizationName", "x"),),)}
        assert core.authenticate_client(nothing, "root", None, addr) == (False, None)
        # a certificate valid for several names: the user name picks one of them
        multi = {"subject": ((("commonName", "other.example.com"),),),
                 "subjectAltName": (("DNS", "other.example.com"),
                                    ("DNS", "float.example.com"))}
        assert core.authenticate_client(multi, "float.example.com", None, addr) == \
            (True, "float.example.com")
        # ... but never a name the certificate is not valid for
        assert core.authenticate_client(multi, "known.example.com", None, addr) == \
            (False, None)
    finally:
        core.shutdown()


def test_certificate_ignored_without_ca(tmp_path, dns):
    core = make_core(tmp_path, "cert")
    core.ca = None
    try:
        assert core.authenticate_client(cert_for("known.example.com"), "root", None,
                                        ("10.0.0.1", 1)) == (False, None)
    finally:
        core.shutdown()


def test_session_cache_only_for_user_names(tmp_path, dns):
    core = make_core(tmp_path, "cert+password")
    try:
        by_name = ("192.0.2.99", 4444)
        core.authenticate_client(None, "known-uuid", "known-pw", by_name)
        # a call that lost its identity still finds it for that (ip, port) only
        assert core.metadata.resolve_client(by_name) == "known.example.com"
        assert core.resolve_client(ClientAddress(by_name))[0] == "known.example.com"
        with pytest.raises(MetadataConsistencyError):
            core.metadata.resolve_client(("192.0.2.99", 4445))
        by_root = ("10.0.0.1", 5555)
        core.authenticate_client(None, "root", "known-pw", by_root)
        assert tuple(by_root) not in core.metadata.session_cache
    finally:
        core.shutdown()
