"""Golden configurations: the plugins of issue 4 checked against the specification.

``repo/`` is a repository that uses every feature of Metadata, GroupPatterns, Bundler,
Rules, Defaults, Cfg, Probes, Decisions and Properties (see ``repo/README.md``);
``expected/<host>.xml`` is the Configuration document of each host, worked out by hand
from ``shared/spec`` (repository.md, core.md §4-§5, protocol.md §6.3) -- never copied
from our server's output.

Comparison, per structure and per entry, in canonical form: tags, attributes (order
ignored), text (``None`` and ``""`` are the same), children in order; the order of the
structures and of the entries of each structure is checked separately (core.md §4
step 10). In the expected files a ``failure`` value containing ``*`` is a shell pattern,
because the spec fixes only part of those messages. XML comments in the expected files are
explanations and are ignored.

Entries where our server differs from the spec are listed in ``KNOWN_DIFFERENCES``: the
host tests skip them, and one strict xfail test per entry keeps asserting the spec, so a
fix makes that test XPASS (strict: fails) and the entry must then leave the list.
"""
import difflib
import fnmatch
import os
import shutil

import lxml.etree
import pytest

from bcfg2_cherry.options import Settings
from bcfg2_cherry.server.core import ClientAddress
from bcfg2_cherry.server.local_core import LocalCore

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "repo")
EXPECTED = os.path.join(HERE, "expected")
PLUGINS = ("Metadata", "GroupPatterns", "Bundler", "Rules", "Defaults", "Cfg", "Probes",
           "Decisions", "Properties")

#: host -> (address used for the calls, why the host is here)
HOSTS = {
    "web1.golden.test": ("10.0.0.11", "webserver; probe group debian; host files; alias"),
    "web2.golden.test": ("10.0.0.12", "webserver; probe group redhat (category os); uuid"),
    "db1.golden.test": ("10.0.0.21", "dbserver; no probe data; version 1.4.0pre2; "
                                     "independent bundle"),
    "kiosk.golden.test": ("10.0.0.31", "floating; workstation; Client conditional; "
                                       "removal rule; suppressed probe group"),
    "ws2.golden.test": ("10.0.0.32", "workstation; NameRange group; group template"),
}

#: (host, structure name, entry tag, entry name) -> reason (spec reference; what we do).
#: Every key is also checked by test_known_difference (strict xfail).
KNOWN_DIFFERENCES = {}

CONF = """[server]
repository = %s
plugins = %s
filemonitor = pseudo

[rules]
regex = true
replace_name = true
"""

PARSER = lxml.etree.XMLParser(remove_blank_text=True, remove_comments=True)


# ------------------------------------------------------------------ the server

def make_core(base):
    """A loaded LocalCore serving a private copy of repo/ in ``base`` (the server may
    write into it)."""
    repo = base / "repo"
    shutil.copytree(REPO, str(repo), symlinks=True)
    conf = base / "bcfg2.conf"
    conf.write_text(CONF % (repo, ", ".join(PLUGINS)))
    local = LocalCore(Settings(str(conf)))
    local.load()
    return local


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    local = make_core(tmp_path_factory.mktemp("golden"))
    try:
        yield local
    finally:
        local.shutdown()


def address(host):
    return ClientAddress((HOSTS[host][0], 40000), host)


_CONFIGS = {}


def actual_config(core, host):
    """The host's Configuration as a client receives it (GetConfig, parsed back)."""
    if host not in _CONFIGS:
        text = core.GetConfig(address(host))
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        _CONFIGS[host] = lxml.etree.fromstring(text.encode("utf-8"), PARSER)
    return _CONFIGS[host]


def expected_config(host):
    return lxml.etree.parse(os.path.join(EXPECTED, host + ".xml"), PARSER).getroot()


# ------------------------------------------------------------------ canonical form

def _text(node):
    return node.text or ""


def _render(node, indent=""):
    """Readable canonical form: attributes sorted, text verbatim, children indented."""
    attrs = "".join(' %s="%s"' % (k, node.get(k)) for k in sorted(node.attrib))
    lines = ["%s<%s%s>" % (indent, node.tag, attrs)]
    if _text(node):
        lines.extend(indent + "  | " + line for line in _text(node).split("\n"))
    for child in node:
        lines.extend(_render(child, indent + "  "))
    return lines


def _attr_equal(key, expected, actual):
    if actual is None:
        return False
    if key == "failure" and "*" in expected:
        return fnmatch.fnmatchcase(actual, expected)
    return expected == actual


def entry_matches(expected, actual):
    """True when ``actual`` is ``expected`` (failure patterns allowed)."""
    if expected.tag != actual.tag or set(expected.attrib) != set(actual.attrib):
        return False
    if not all(_attr_equal(k, v, actual.get(k)) for k, v in expected.attrib.items()):
        return False
    if _text(expected) != _text(actual) or len(expected) != len(actual):
        return False
    return all(entry_matches(e, a) for e, a in zip(expected, actual))


def entry_diff(expected, actual):
    """A unified diff of the two entries' canonical forms."""
    exp = _render(expected) if expected is not None else []
    act = _render(actual) if actual is not None else []
    return "\n".join(difflib.unified_diff(exp, act, "expected (spec)", "actual (ours)",
                                          lineterm="", n=20))


def key_of(entry):
    return (entry.tag, entry.get("name"))


def index(structure):
    """{(tag, name): [entries]} (a name may repeat with another tag, or even the same)."""
    result = {}
    for entry in structure:
        result.setdefault(key_of(entry), []).append(entry)
    return result


def compare_host(core, host, skip=()):
    """All differences between the expected and the actual configuration of ``host``,
    as a list of readable messages; entries whose ``(structure, tag, name)`` is in
    ``skip`` are not compared.
    """
    exp = expected_config(host)
    act = actual_config(core, host)
    problems = []
    if (act.tag, dict(act.attrib)) != (exp.tag, dict(exp.attrib)):
        problems.append("root: expected <%s %s>, got <%s %s>"
                        % (exp.tag, dict(exp.attrib), act.tag, dict(act.attrib)))
    exp_structs = [key_of(s) for s in exp]
    act_structs = [key_of(s) for s in act]
    if exp_structs != act_structs:
        problems.append("structures: expected %s\n                got %s"
                        % (exp_structs, act_structs))
    act_by_key = {key_of(s): s for s in act}
    for estruct in exp:
        astruct = act_by_key.get(key_of(estruct))
        if astruct is None:
            continue
        sname = estruct.get("name")
        if dict(estruct.attrib) != dict(astruct.attrib):
            problems.append("%s %s: attributes expected %s, got %s"
                            % (estruct.tag, sname, dict(estruct.attrib),
                               dict(astruct.attrib)))
        exp_order = [key_of(e) for e in estruct]
        act_order = [key_of(e) for e in astruct]
        if exp_order != act_order:
            diff = "\n".join(difflib.unified_diff(
                ["%s %s" % k for k in exp_order], ["%s %s" % k for k in act_order],
                "expected order", "actual order", lineterm="", n=2))
            problems.append("%s %s: entries differ in presence or order "
                            "(core.md §4 step 10):\n%s" % (estruct.tag, sname, diff))
        exp_idx, act_idx = index(estruct), index(astruct)
        for key in sorted(set(exp_idx) | set(act_idx), key=str):
            if (sname,) + key in skip:
                continue
            elist, alist = exp_idx.get(key, []), act_idx.get(key, [])
            for pos in range(max(len(elist), len(alist))):
                eentry = elist[pos] if pos < len(elist) else None
                aentry = alist[pos] if pos < len(alist) else None
                if eentry is None or aentry is None or not entry_matches(eentry, aentry):
                    problems.append("%s %s: %s %s:\n%s" % (
                        estruct.tag, sname, key[0], key[1], entry_diff(eentry, aentry)))
    return problems


# ------------------------------------------------------------------ tests

def test_expected_files_are_consistent():
    """Every host has an expectation, in sorted order (a check of the hand work)."""
    assert sorted(f[:-4] for f in os.listdir(EXPECTED) if f.endswith(".xml")) == \
        sorted(HOSTS)
    for host in HOSTS:
        exp = expected_config(host)
        names = [s.get("name") for s in exp]
        assert names == sorted(names), host
        for struct in exp:
            names = [e.get("name") for e in struct]
            assert names == sorted(names), (host, struct.get("name"))


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_configuration(core, host):
    skip = {k[1:] for k in KNOWN_DIFFERENCES if k[0] == host}
    problems = compare_host(core, host, skip)
    assert not problems, "%s (%s) differs from the spec:\n\n%s" % (
        host, HOSTS[host][1], "\n\n".join(problems))


@pytest.mark.parametrize("key", [
    pytest.param(key, id="%s|%s|%s:%s" % key,
                 marks=pytest.mark.xfail(strict=True, reason=reason))
    for key, reason in sorted(KNOWN_DIFFERENCES.items())] or [
    pytest.param(None, id="none", marks=pytest.mark.skip(
        reason="no known differences between our server and the spec"))])
def test_known_difference(core, key):
    host, sname, tag, name = key
    exp = {s.get("name"): s for s in expected_config(host)}[sname]
    act = {s.get("name"): s for s in actual_config(core, host)}.get(sname)
    elist = index(exp).get((tag, name), [])
    alist = index(act).get((tag, name), []) if act is not None else []
    assert len(elist) == len(alist) and \
        all(entry_matches(e, a) for e, a in zip(elist, alist)), \
        "\n".join(entry_diff(e, a) for e, a in zip(elist + [None] * len(alist),
                                                   alist + [None] * len(elist)))


# ------------------------------------------------------------------ GetProbes

SCRIPTS = {
    "hwinfo": ("/usr/bin/env python3",
               '#!/usr/bin/env python3\nimport json, os\n'
               'print(json.dumps({"cpus": os.cpu_count()}))\n'),
    "os": ("/bin/sh", '#!/bin/sh\n. /etc/os-release\necho "group:$ID"\n'),
    "role": ("/bin/sh", "echo generic\n"),
    "role.G50_webserver": ("/bin/bash -e", "#!/bin/bash -e\necho web\n"),
    "role.H_db1.golden.test": ("/bin/sh", "#!/bin/sh\necho db\n"),
}


def probes_of(core, host):
    text = core.GetProbes(address(host))
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    root = lxml.etree.fromstring(text.encode("utf-8"))
    assert root.tag == "probes"
    return sorted((p.tag, sorted(p.attrib.items()), p.text) for p in root)


def probe(name, variant=None):
    interpreter, script = SCRIPTS[variant or name]
    return ("probe", sorted({"name": name, "source": "Probes",
                             "interpreter": interpreter}.items()), script)


@pytest.mark.parametrize("host, expected", [
    # repository.md §6: the most specific file per probe name; interpreter from "#!",
    # else /bin/sh; the text is the whole script; probed.xml is not a probe
    ("web1.golden.test", [probe("hwinfo"), probe("os"),
                          probe("role", "role.G50_webserver")]),
    ("db1.golden.test", [probe("hwinfo"), probe("os"),
                         probe("role", "role.H_db1.golden.test")]),
    ("kiosk.golden.test", [probe("hwinfo"), probe("os"), probe("role")]),
])
def test_get_probes(core, host, expected):
    assert probes_of(core, host) == sorted(expected)


# ------------------------------------------------------------------ GetDecisionList

@pytest.mark.parametrize("host, mode, expected", [
    # repository.md §7: [type, name] of every Decision left after XMLMatch
    ("web1.golden.test", "whitelist", [["Path", "/etc/apt/*"], ["Service", "*"]]),
    ("web1.golden.test", "blacklist", [["Path", "/etc/motd"]]),
    ("web2.golden.test", "whitelist", [["Package", "golden-*"], ["Service", "*"]]),
    ("web2.golden.test", "blacklist", [["Package", "*"], ["Path", "/etc/motd"]]),
    ("ws2.golden.test", "whitelist", [["Package", "golden-*"], ["Path", "/etc/apt/*"],
                                      ["Service", "*"]]),
])
def test_get_decision_list(core, host, mode, expected):
    result = core.GetDecisionList(address(host), mode)
    assert sorted(list(d) for d in result) == expected


# ------------------------------------------------------------------ metadata lookups

def test_alias_and_case_resolve_to_the_client(core):
    """repository.md §1.3 step 1: the name is lower-cased, an alias maps to its client."""
    md = core.build_metadata("WWW.Golden.Test")
    assert md.hostname == "web1.golden.test"
    assert md.profile == "webserver"
    assert md.aliases == {"www.golden.test"}


# ------------------------------------------------------------------ RecvProbeData

PROBE_UPLOAD = """<ProbeData>
<probe-data name="hwinfo" source="Probes">{"cpus": 16}
</probe-data>
<probe-data name="os" source="Probes">group: lab
ID=debian
group:extra
</probe-data>
<probe-data name="empty" source="Probes"/>
</ProbeData>"""


def test_recv_probe_data_reaches_templates_and_probed_xml(tmp_path):
    """repository.md §6: group: lines become groups and leave the value; the upload
    replaces the client's data; probed.xml is rewritten, sorted; templates see it."""
    local = make_core(tmp_path)
    try:
        host = "ws2.golden.test"
        assert local.RecvProbeData(address(host), PROBE_UPLOAD) is True
        config = lxml.etree.fromstring(local.GetConfig(address(host)).encode("utf-8"),
                                       PARSER)
        info = config.xpath('//Path[@name="/etc/golden/info.conf"]')[0]
        assert info.text == (
            "# /etc/golden/info.conf for ws2.golden.test\n"
            "profile=workstation\n"
            "groups=debian,desktop-users,extra,lab,linux,monitored,office,workstation\n"
            "bundles=apt,base,desktop\n"
            "os=debian\n"
            "version=None\n"
            "cpus=16\n"
            "role=none\n"
            "ntp=ntp1.golden.test ntp2.golden.test\n"
            "webnodes=web1.golden.test,web2.golden.test\n"
            "source=REPO/Cfg/etc/golden/info.conf/info.conf.jinja2\n"
            "path=/etc/golden/info.conf\n")
        probed = lxml.etree.parse(str(tmp_path / "repo" / "Probes" / "probed.xml"),
                                  PARSER).getroot()
        assert probed.tag == "Probed"
        clients = [c.get("name") for c in probed]
        assert clients == sorted(["kiosk.golden.test", "web1.golden.test",
                                  "web2.golden.test", host])
        mine = probed[clients.index(host)]
        int(mine.get("timestamp"))
        assert [(c.tag, dict(c.attrib)) for c in mine] == [
            ("Probe", {"name": "empty", "value": ""}),
            ("Probe", {"name": "hwinfo", "value": '{"cpus": 16}\n'}),
            ("Probe", {"name": "os", "value": "ID=debian\n"}),
            ("Group", {"name": "extra"}),
            ("Group", {"name": "lab"}),
        ]
        web1 = probed[clients.index("web1.golden.test")]
        assert [(c.tag, c.get("name"), c.get("value")) for c in web1] == [
            ("Probe", "hwinfo", '{"cpus": 8, "arch": "x86_64"}'),
            ("Probe", "os", ""), ("Probe", "role", "web"), ("Group", "debian", None)]
    finally:
        local.shutdown()


def test_unknown_client_gets_the_default_profile(tmp_path):
    """repository.md §1.3 step 2 and §1.7: a name not in clients.xml is created with the
    default group (webserver) as its profile."""
    local = make_core(tmp_path)
    try:
        md = local.build_metadata("new1.golden.test")
        assert md.profile == "webserver"
        assert md.groups == {"webserver", "linux", "monitored"}
        assert md.bundles == {"base", "web"}
        clients = lxml.etree.parse(str(tmp_path / "repo" / "Metadata" / "clients.xml"),
                                   PARSER).getroot()
        assert [dict(c.attrib) for c in clients.iter("Client")
                if c.get("name") == "new1.golden.test"] == \
            [{"name": "new1.golden.test", "profile": "webserver"}]
    finally:
        local.shutdown()
