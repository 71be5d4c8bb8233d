"""``bcfg2-cherry admin``: xcmd, perf, expirecache against a real server with real TLS,
``client`` on the clients.xml of a running server, and ``init`` producing a repository
and certificates that a real server then serves.
"""
import io
import json
import os
import re
import ssl
import time

import lxml.etree
import pytest

from bcfg2_cherry.cli.admin import render
from bcfg2_cherry.cli.main import main
from tests.integration.test_client import WireServer, start_demo_server, xmlrpc_response
from tests.support.servers import start_server

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory, test_ca):
    """A real server on a copy of the demo repository, for this module's tests."""
    srv = start_demo_server(tmp_path_factory.mktemp("admin-server"), test_ca)
    yield srv
    srv.stop()


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def admin(server, *argv):
    return main(["admin", "-C", server.client_conf] + list(argv))


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# -- on a running server

def test_xcmd_plain_json_and_rmi(server, capsys):
    assert admin(server, "xcmd", "listMethods") == 0
    methods = capsys.readouterr().out.split()
    assert {"GetConfig", "get_statistics", "Metadata.list_clients"} <= set(methods)
    assert admin(server, "xcmd", "Metadata.list_clients", "--json") == 0
    assert set(json.loads(capsys.readouterr().out)) >= {
        "web1.demo.example", "web2.demo.example", "db1.demo.example",
        "ws1.demo.example"}
    # arguments are strings, as upstream's xcmd sends them
    assert admin(server, "xcmd", "set_debug", "false") == 0
    assert capsys.readouterr().out == "False\n"
    assert admin(server, "xcmd", "methodHelp", "GetConfig") == 0
    assert capsys.readouterr().out.strip()


def test_xcmd_fault_is_one_line(server, capsys):
    assert admin(server, "xcmd", "NoSuchMethod", "x") == 1
    assert one_error_line(capsys) == ("bcfg2-cherry admin: NoSuchMethod failed: server "
                                      "fault -32601: Unknown method NoSuchMethod")


def test_perf_sorted_by_total(server, capsys):
    for _ in range(2):
        assert admin(server, "xcmd", "GetProbes") == 0
    capsys.readouterr()
    assert admin(server, "perf") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["method", "count", "total", "s", "mean", "s", "min", "s",
                                "max", "s"]
    assert set(lines[1]) == {"-", " "}
    totals = [float(line.split()[2]) for line in lines[2:]]
    assert totals == sorted(totals, reverse=True) and totals
    assert admin(server, "perf", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    get_probes = [r for r in rows if r["name"] == "GetProbes"][0]
    assert get_probes["count"] >= 2
    assert abs(get_probes["total"] - get_probes["mean"] * get_probes["count"]) < 1e-9


def test_expirecache(server, capsys):
    assert admin(server, "expirecache") == 0
    assert admin(server, "expirecache", "web1.demo.example",
                 "web2.demo.example") == 0
    assert capsys.readouterr().out.splitlines() == [
        "expired the metadata cache of all clients",
        "expired the metadata cache of web1.demo.example, web2.demo.example"]


def test_admin_errors_are_one_line(server, capsys, tmp_path, free_port_factory):
    assert admin(server, "-x", "wrong", "perf") == 1
    assert one_error_line(capsys).startswith(
        "bcfg2-cherry admin: get_statistics failed: authentication denied by %s "
        "(HTTP 401)" % server.url)
    port = free_port_factory()
    assert admin(server, "-S", "https://127.0.0.1:%d" % port, "xcmd",
                 "listMethods") == 1
    assert one_error_line(capsys) == (
        "bcfg2-cherry admin: listMethods failed: connection refused by "
        "https://127.0.0.1:%d (is the server running?)" % port)
    import trustme
    other = tmp_path / "other.crt"
    other.write_bytes(trustme.CA().cert_pem.bytes())
    assert admin(server, "--ca", str(other), "expirecache") == 1
    assert "TLS failure with %s: the server certificate failed verification" \
        % server.url in one_error_line(capsys)


# -- clients.xml beside the running server

def _wait_for_client(server, name, present, capsys, wait=15):
    deadline = time.monotonic() + wait
    capsys.readouterr()
    while True:
        assert admin(server, "xcmd", "Metadata.list_clients", "--json") == 0
        names = json.loads(capsys.readouterr().out)
        if (name in names) == present:
            return
        assert time.monotonic() < deadline, names
        time.sleep(0.2)


def test_client_add_update_list_del(server, capsys):
    repo = ["-Q", server.repo]
    clients_xml = os.path.join(server.repo, "Metadata", "clients.xml")
    assert admin(server, *repo, "client", "add", "New1.demo.example",
                 "address=10.1.2.3", "secure=yes", "password=s3cret") == 0
    assert capsys.readouterr().out == "client new1.demo.example added\n"
    text = read(clients_xml)
    assert "<!-- floating: accepted from any source address -->" in text  # kept
    element = lxml.etree.fromstring(text.encode()).find(
        "Client[@name='new1.demo.example']")
    # no profile given: the default group of groups.xml
    assert dict(element.attrib) == {"name": "new1.demo.example",
                                    "profile": "workstation", "address": "10.1.2.3",
                                    "secure": "true", "password": "s3cret"}
    _wait_for_client(server, "new1.demo.example", True, capsys)

    assert admin(server, *repo, "client", "add", "new1.demo.example") == 1
    assert one_error_line(capsys) == ("bcfg2-cherry admin: client new1.demo.example "
                                      "exists already")
    assert admin(server, *repo, "client", "update", "new1.demo.example",
                 "profile=webserver", "address=") == 0
    element = lxml.etree.parse(clients_xml).find("Client[@name='new1.demo.example']")
    assert element.get("profile") == "webserver" and element.get("address") is None

    capsys.readouterr()
    assert admin(server, *repo, "client", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["name", "profile"]
    row = [line for line in lines if line.startswith("new1.demo.example")][0]
    assert "webserver" in row and "s3cret" not in row and "set" in row
    assert admin(server, *repo, "client", "list", "--json") == 0
    listed = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["web1.demo.example"]["aliases"] == ["www.demo.example"]
    assert listed["new1.demo.example"]["password"] is True

    assert admin(server, *repo, "client", "del", "new1.demo.example") == 0
    assert "new1.demo.example" not in read(clients_xml)
    _wait_for_client(server, "new1.demo.example", False, capsys)
    assert admin(server, *repo, "client", "rm", "new1.demo.example") == 1
    assert one_error_line(capsys).startswith("bcfg2-cherry admin: no client "
                                             "new1.demo.example in ")


def test_client_commands_follow_xinclude(tmp_path, capsys):
    """A client kept in an included file is listed, updated and deleted there."""
    meta = tmp_path / "Metadata"
    meta.mkdir()
    (meta / "groups.xml").write_text('<Groups><Group name="g" profile="true" '
                                     'default="true"/></Groups>\n')
    (meta / "clients.xml").write_text(
        '<Clients xmlns:xi="http://www.w3.org/2001/XInclude">\n'
        '  <Client name="a.example" profile="g"/>\n'
        '  <xi:include href="more.xml"/>\n</Clients>\n')
    (meta / "more.xml").write_text('<Clients>\n  <!-- lab -->\n'
                                   '  <Client name="b.example" profile="g"/>\n'
                                   '</Clients>\n')
    base = ["admin", "-C", str(tmp_path / "none.conf"), "-Q", str(tmp_path), "client"]
    assert main(base + ["list", "--json"]) == 0
    assert [c["name"] for c in json.loads(capsys.readouterr().out)] == [
        "a.example", "b.example"]
    assert main(base + ["update", "B.example", "floating=on"]) == 0
    assert 'floating="true"' in read(meta / "more.xml")
    assert main(base + ["del", "b.example"]) == 0
    assert "b.example" not in read(meta / "more.xml")
    assert "<!-- lab -->" in read(meta / "more.xml")
    assert "xi:include" in read(meta / "clients.xml")
    assert main(base + ["add", "c.example"]) == 0
    assert 'name="c.example" profile="g"' in read(meta / "clients.xml")


def test_client_bad_attributes(server, capsys):
    repo = ["-Q", server.repo]
    for attr in ("colour=red", "auth=magic", "address=not-an-ip", "floating=maybe",
                 "profile="):
        assert admin(server, *repo, "client", "add", "x.example", attr) == 2
        assert one_error_line(capsys).startswith("bcfg2-cherry admin: ")
    assert admin(server, "-Q", "/nonexistent", "client", "list") == 1
    assert "clients.xml does not exist" in one_error_line(capsys)


def test_xcmd_tables_from_wire_server(test_ca, tmp_path, capsys):
    """Structs and lists of lists print as aligned tables."""
    value = {"b": [1, 2.5], "a": [10, 0.25]}
    with WireServer(test_ca, lambda raw: xmlrpc_response(value)) as server:
        conf = tmp_path / "c.conf"
        conf.write_text("[components]\nbcfg2 = %s\n[communication]\npassword = p\n"
                        "ca = %s\n" % (server.url, test_ca.ca_cert))
        assert main(["admin", "-C", str(conf), "xcmd", "whatever"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a  10  0.250000",
                                                     "b   1  2.500000"]


def test_render_shapes():
    assert render(None) == []
    assert render(True) == ["True"]
    assert render(["x", "y"]) == ["x", "y"]
    assert render({"k": "v", "a": 1}) == ["a  1", "k  v"]
    assert render([{"name": "a", "n": 1}, {"name": "bb", "n": 22}]) == [
        "name  n", "----  --", "a      1", "bb    22"]
    assert render({"h": {"x": 1}}) == ["name  x", "----  -", "h     1"]
    assert render({"deep": {"x": [1]}})[0] == "{"


# -- init

def test_init_unattended_then_serve_and_run(test_ca, tmp_path, capsys,
                                            free_port_factory):
    port = free_port_factory()
    repo, conf, tls = tmp_path / "repo", tmp_path / "etc" / "bcfg2.conf", tmp_path / "tls"
    url = "https://127.0.0.1:%d" % port
    assert main(["admin", "init", str(repo), "--conf", str(conf), "--yes",
                 "--hostname", "bcfg2.init.test", "--server-url", url,
                 "--password", "pw%1", "--tls-dir", str(tls)]) == 0
    out = capsys.readouterr().out
    assert "bcfg2-cherry serve -C %s" % conf in out
    for sub in ("Metadata", "Bundler", "Rules", "Cfg", "Probes", "etc"):
        assert (repo / sub).is_dir()
    assert os.stat(conf).st_mode & 0o777 == 0o600
    assert os.stat(tls / "ca.key").st_mode & 0o777 == 0o600
    assert os.stat(tls / "server.key").st_mode & 0o777 == 0o600
    text = conf.read_text()
    assert "password = pw%%1" in text and "bcfg2 = %s" % url in text

    # the server certificate verifies against the CA for its name and for 127.0.0.1
    ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    ctx.load_cert_chain(str(tls / "server.crt"), str(tls / "server.key"))
    from cryptography import x509
    cert = x509.load_pem_x509_certificate((tls / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "bcfg2.init.test" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)][:1] == [
        "127.0.0.1"]

    # a second init refuses to overwrite
    assert main(["admin", "init", str(repo), "--conf", str(conf), "--yes",
                 "--hostname", "h", "--server-url", url, "--tls-dir", str(tls)]) == 1
    assert "exists and is not empty (--force to use it)" in one_error_line(capsys)

    # a real server serves it, and a client run with the same bcfg2.conf works
    server = start_server("cherrypy", str(conf), tmp_path, port=port)
    try:
        capsys.readouterr()
        assert main(["client", "-C", str(conf)]) == 0
        config = lxml.etree.fromstring(capsys.readouterr().out.encode())
        assert [b.get("name") for b in config.findall("Bundle")] == ["basic"]
        assert main(["admin", "-C", str(conf), "xcmd", "Metadata.list_clients"]) == 0
        assert capsys.readouterr().out.split() == ["bcfg2.init.test"]
    finally:
        server.stop()


def test_init_prompts_are_skipped_without_terminal(tmp_path, capsys, monkeypatch):
    """Without a terminal (and without --yes) the defaults are taken, never asked."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    conf = tmp_path / "bcfg2.conf"
    assert main(["admin", "-C", str(conf), "init", str(tmp_path / "r"),
                 "--hostname", "h.example", "--server-url", "h.example:6789"]) == 0
    text = conf.read_text()
    assert "bcfg2 = https://h.example:6789" in text
    password = re.search(r"(?m)^password = (\S+)$", text).group(1)
    assert len(password) >= 16
    assert (tmp_path / "bcfg2-tls" / "ca.crt").exists()
