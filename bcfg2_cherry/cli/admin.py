"""``bcfg2-cherry admin``: manage a Bcfg2 server and its repository.

On a running server (connection options as for ``client``, from bcfg2.conf):
  xcmd METHOD [ARG...]   call any exposed method or plugin RMI (arguments are strings)
  perf                   call timings (get_statistics), slowest total first
  expirecache [HOST...]  expire the metadata cache of some or all clients
On the repository (-Q or [server] repository; safe beside a running server):
  client list|add|update|del   clients.xml, edited atomically under the server's lock
  init [DIR]             a new repository, bcfg2.conf, CA and server certificate
"""
import argparse
import datetime
import getpass
import ipaddress
import json
import logging
import os
import secrets
import socket
import sys

from bcfg2_cherry.cli.client import (
    add_connection_options,
    fail,
    load_settings,
    make_proxy,
    report_errors,
    setup_logging,
)
from bcfg2_cherry.client.proxy import ProxyError
from bcfg2_cherry.state import atomic_write

logger = logging.getLogger(__name__)

#: clients.xml attributes ``client add|update`` accepts (upstream's list)
CLIENT_ATTRIBUTES = ("profile", "uuid", "password", "floating", "secure", "address",
                     "auth")
#: plugins of a repository made by ``init``
INIT_PLUGINS = ("Metadata", "Bundler", "Rules", "Cfg", "Probes")


def add_parser(subparsers):
    parser = subparsers.add_parser("admin", help="manage a server and its repository",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_options(parser)
    parser.add_argument("-Q", "--repository", metavar="DIR",
                        help="repository for `client` ([server] repository)")
    sub = parser.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)

    p = sub.add_parser("xcmd", help="call a method on the server and print the result")
    p.add_argument("method", help="e.g. listMethods, get_statistics, "
                                  "Metadata.list_clients")
    p.add_argument("arguments", nargs="*", metavar="ARG", help="passed as strings")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func_admin=cmd_xcmd)

    p = sub.add_parser("perf", help="call timings of the server, slowest total first")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func_admin=cmd_perf)

    p = sub.add_parser("expirecache", help="expire the server's metadata cache")
    p.add_argument("hosts", nargs="*", metavar="HOST", help="only these clients")
    p.set_defaults(func_admin=cmd_expirecache)

    p = sub.add_parser("client", help="list, add, update or delete clients in "
                                      "clients.xml")
    p.add_argument("mode", choices=["list", "add", "update", "up", "del", "delete",
                                    "remove", "rm"])
    p.add_argument("name", nargs="?", help="client name (add, update, del)")
    p.add_argument("attributes", nargs="*", metavar="KEY=VALUE",
                   help="attributes: %s (update: KEY= removes one)"
                        % ", ".join(CLIENT_ATTRIBUTES))
    p.add_argument("--json", action="store_true", help="list: print JSON")
    p.set_defaults(func_admin=cmd_client)

    p = sub.add_parser("init", help="create a repository, bcfg2.conf and certificates",
                       description="Create a repository skeleton (%s), a bcfg2.conf "
                       "and a CA with a server certificate. Asks for what is not given "
                       "on the command line when run on a terminal; --yes takes the "
                       "defaults." % ", ".join(INIT_PLUGINS))
    p.add_argument("directory", nargs="?", metavar="DIR",
                   help="repository to create (default /var/lib/bcfg2)")
    p.add_argument("--conf", metavar="FILE",
                   help="bcfg2.conf to write (default: -C, else /etc/bcfg2.conf)")
    p.add_argument("--hostname", help="the server's host name (default: this host's)")
    p.add_argument("--server-url", metavar="URL",
                   help="[components] bcfg2 (default https://HOSTNAME:6789)")
    p.add_argument("--password", dest="init_password", metavar="PASSWORD",
                   help="global client password (default: a random one)")
    p.add_argument("--tls-dir", metavar="DIR",
                   help="where the CA and server key and certificate go "
                        "(default: bcfg2-tls beside bcfg2.conf)")
    p.add_argument("--yes", action="store_true",
                   help="never ask: use the defaults for anything not given")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty DIR and replace an existing bcfg2.conf")
    p.set_defaults(func_admin=cmd_init)
    parser.set_defaults(func=run)
    return parser


@report_errors
def run(args):
    """Dispatch to the subcommand; every error ends as one line and status 1."""
    return args.func_admin(args)


def _out(text=""):
    sys.stdout.write("%s\n" % text)


# -- showing results ---------------------------------------------------------------------

def _scalar(value):
    return value is None or isinstance(value, (str, int, float, bool, bytes))


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        return "%.6f" % value
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=_json_default)
    return str(value)


def table(rows, header=None):
    """Lines of an aligned text table (numbers right-aligned)."""
    rows = [[_cell(c) for c in row] for row in rows]
    every = ([list(header)] if header else []) + rows
    if not every:
        return []
    width = max(len(r) for r in every)
    every = [r + [""] * (width - len(r)) for r in every]
    widths = [max(len(r[i]) for r in every) for i in range(width)]
    numeric = [all(_is_number(r[i]) for r in rows) and rows for i in range(width)]
    lines = []
    for n, row in enumerate(every):
        cells = [(row[i].rjust(widths[i]) if numeric[i] and not (header and n == 0)
                  else row[i].ljust(widths[i])) for i in range(width)]
        lines.append("  ".join(cells).rstrip())
        if header and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _json_default(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def render(value):
    """Lines showing an XML-RPC result readably: scalars as they are, lists one item a
    line, lists of lists/structs and structs as tables, anything deeper as JSON."""
    if value is None:
        return []
    if _scalar(value):
        return [_cell(value) if not isinstance(value, bool) else str(value)]
    if isinstance(value, (list, tuple)):
        if all(_scalar(v) for v in value):
            return [_cell(v) for v in value]
        if all(isinstance(v, (list, tuple)) and all(_scalar(c) for c in v)
               for v in value):
            return table(value)
        if all(isinstance(v, dict) and all(_scalar(c) for c in v.values())
               for v in value):
            keys = []
            for item in value:
                keys.extend(k for k in item if k not in keys)
            return table([[item.get(k) for k in keys] for item in value], keys)
    elif isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        if all(_scalar(v) for _, v in items):
            return table([[k, v] for k, v in items])
        if all(isinstance(v, (list, tuple)) and all(_scalar(c) for c in v)
               for _, v in items):
            return table([[k] + list(v) for k, v in items])
        if all(isinstance(v, dict) and all(_scalar(c) for c in v.values())
               for _, v in items):
            keys = []
            for _, item in items:
                keys.extend(k for k in item if k not in keys)
            return table([[k] + [v.get(c) for c in keys] for k, v in items],
                         ["name"] + keys)
    return json.dumps(value, indent=2, sort_keys=True, default=_json_default).split("\n")


def _print(value, as_json):
    if as_json:
        _out(json.dumps(value, indent=2, sort_keys=True, default=_json_default))
    else:
        for line in render(value):
            _out(line)


# -- commands on a running server ---------------------------------------------------------

def _proxy(args):
    settings = load_settings(args)
    setup_logging(settings)
    return make_proxy(args, settings)


def _call(proxy, method, *params):
    try:
        return proxy.call(method, *params)
    except ProxyError as err:
        fail("bcfg2-cherry admin: %s failed: %s" % (method, err))


def cmd_xcmd(args):
    """Call METHOD with the arguments as strings; print the result."""
    result = _call(_proxy(args), args.method, *args.arguments)
    _print(result, args.json)


def cmd_perf(args):
    """get_statistics as a table, slowest total time first."""
    data = _call(_proxy(args), "get_statistics")
    if not isinstance(data, dict):
        fail("bcfg2-cherry admin: get_statistics returned %s, not a struct"
             % type(data).__name__)
    rows = []
    for name, values in data.items():
        try:
            low, high, mean, count = (float(v) for v in values[:4])
        except (TypeError, ValueError):
            logger.warning("skipping malformed statistics for %s: %r", name, values)
            continue
        rows.append({"name": name, "count": int(count), "total": mean * count,
                     "mean": mean, "min": low, "max": high})
    rows.sort(key=lambda r: (-r["total"], r["name"]))
    if args.json:
        _print(rows, True)
        return
    if not rows:
        _out("(no calls recorded yet)")
        return
    for line in table([[r["name"], r["count"], r["total"], r["mean"], r["min"],
                        r["max"]] for r in rows],
                      ["method", "count", "total s", "mean s", "min s", "max s"]):
        _out(line)


def cmd_expirecache(args):
    """expire_metadata_cache with the host names, or nil for every client."""
    _call(_proxy(args), "expire_metadata_cache", list(args.hosts) or None)
    _out("expired the metadata cache of %s" % (", ".join(args.hosts) if args.hosts
                                                else "all clients"))


# -- clients.xml ---------------------------------------------------------------------------

def _repository(args):
    settings = load_settings(args)
    setup_logging(settings)
    repo = args.repository or settings.repository
    return os.path.abspath(os.path.expanduser(repo))


def _load_clients(path):
    """``(root with XIncludes resolved, included files)`` of clients.xml."""
    from bcfg2_cherry.plugin.helpers import XMLFileBacked
    from bcfg2_cherry.xml import XMLError, parse_repo_file

    if not os.path.exists(path):
        fail("bcfg2-cherry admin: %s does not exist (is -Q/[server] repository the "
             "repository?)" % path)
    try:
        parse_repo_file(path)
    except XMLError as err:
        fail("bcfg2-cherry admin: %s" % err)
    xfile = XMLFileBacked(path)
    if not xfile.load():
        fail("bcfg2-cherry admin: cannot read %s" % path)
    return xfile.xdata, list(xfile.extras)


def _default_profile(repo):
    """The default group of groups.xml (the last declared), or None."""
    from bcfg2_cherry.xml import XMLError, parse_repo_file

    try:
        root = parse_repo_file(os.path.join(repo, "Metadata", "groups.xml")).getroot()
    except XMLError:
        return None
    defaults = [g.get("name") for g in root.iter("Group")
                if g.get("default", "false").lower() == "true" and g.get("name")]
    return defaults[-1] if defaults else None


def _client_attributes(pairs, allow_empty):
    attribs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in CLIENT_ATTRIBUTES:
            fail("bcfg2-cherry admin: %r is not KEY=VALUE with KEY one of %s"
                 % (pair, ", ".join(CLIENT_ATTRIBUTES)), status=2)
        if value == "":
            if not allow_empty:
                fail("bcfg2-cherry admin: %s needs a value" % key, status=2)
            attribs[key] = None
            continue
        if key in ("floating", "secure"):
            low = value.lower()
            if low not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                fail("bcfg2-cherry admin: %s=%s: expected true or false" % (key, value),
                     status=2)
            value = "true" if low in ("true", "yes", "1", "on") else "false"
        elif key == "auth" and value not in ("cert", "cert+password", "bootstrap"):
            fail("bcfg2-cherry admin: auth=%s: expected cert, cert+password or "
                 "bootstrap" % value, status=2)
        elif key == "address":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                fail("bcfg2-cherry admin: address=%s is not an IP address" % value,
                     status=2)
        attribs[key] = value
    return attribs


def cmd_client(args):
    """clients.xml: list, add NAME, update NAME, del NAME."""
    from bcfg2_cherry.plugins.metadata import ClientsData, clients_xml_lock, edit_client

    repo = _repository(args)
    path = os.path.join(repo, "Metadata", "clients.xml")
    mode = {"up": "update", "delete": "del", "remove": "del", "rm": "del"}.get(
        args.mode, args.mode)
    if mode == "list":
        if args.name:
            fail("bcfg2-cherry admin: client list takes no name", status=2)
        root, _extras = _load_clients(path)
        _list_clients(root, args.json)
        return
    if not args.name:
        fail("bcfg2-cherry admin: client %s needs a client name" % mode, status=2)
    if mode == "del" and args.attributes:
        fail("bcfg2-cherry admin: client del takes no attributes", status=2)
    attribs = _client_attributes(args.attributes, allow_empty=(mode == "update"))
    name = args.name.strip().lower()
    if mode == "add":
        if "profile" not in attribs:
            attribs["profile"] = _default_profile(repo)
            if not attribs["profile"]:
                fail("bcfg2-cherry admin: give profile=GROUP (groups.xml has no "
                     "default group)", status=2)
    try:
        with clients_xml_lock(path):
            root, extras = _load_clients(path)
            known = ClientsData(root, source=path)
            exists = known.canonical(name) in known.profiles
            if mode == "add":
                if exists or name in known.aliases:
                    fail("bcfg2-cherry admin: client %s exists already" % name)
                result = edit_client(path, name, create=attribs, included=extras)
            elif not exists:
                fail("bcfg2-cherry admin: no client %s in %s" % (name, path))
            elif mode == "update":
                result = edit_client(path, known.canonical(name), update=attribs,
                                     included=extras)
            else:
                result = edit_client(path, known.canonical(name), remove=True,
                                     included=extras)
    except OSError as err:
        fail("bcfg2-cherry admin: cannot update %s: %s" % (path, err))
    except KeyError:
        fail("bcfg2-cherry admin: no client %s in %s" % (name, path))
    _out("client %s %s" % (name, {"created": "added"}.get(result, result)))


def _list_clients(root, as_json):
    rows = []
    for element in root.iter("Client"):
        attrs = dict(element.attrib)
        has_password = attrs.pop("password", None) is not None
        attrs["password"] = "set" if has_password else ""
        attrs["aliases"] = [a.get("name") for a in element.iter("Alias") if a.get("name")]
        rows.append(attrs)
    if as_json:
        for row in rows:
            row["password"] = bool(row["password"])
        _print(rows, True)
        return
    columns = ["name", "profile", "address", "uuid", "auth", "secure", "floating",
               "password", "version", "aliases"]
    used = [c for c in columns if c == "name" or any(r.get(c) for r in rows)]
    for line in table([[r.get(c) for c in used] for r in rows], used):
        _out(line)


# -- init ---------------------------------------------------------------------------------

GROUPS_XML = """<Groups>
  <!-- profile groups a client can have; "default" is given to new clients -->
  <Group name="basic" profile="true" public="true" default="true">
    <Bundle name="basic"/>
  </Group>
</Groups>
"""

CLIENTS_XML = """<Clients version="3.0">
  <!-- the server itself: admin calls from 127.0.0.1 are made as this client -->
  <Client name="%s" profile="basic" address="127.0.0.1"/>
</Clients>
"""

BUNDLE_XML = """<Bundle>
  <!-- entries of bundle "basic", e.g. <Path name="/etc/motd"/> with the file in
       Cfg/etc/motd/motd -->
</Bundle>
"""

RULES_XML = """<Rules priority="1">
  <!-- e.g. <Service name="ssh" type="systemd" status="on"/> -->
</Rules>
"""

CONF_TEMPLATE = """# bcfg2.conf written by `bcfg2-cherry admin init` on %(date)s.
# Every option is described in bcfg2_cherry's conf/bcfg2.conf.

[server]
repository = %(repository)s
plugins = %(plugins)s
backend = cherrypy
# listen on every interface instead of the address of [components] bcfg2:
#listen_all = true

[components]
bcfg2 = %(url)s

[communication]
protocol = xmlrpc/ssl
# the global client password ('%%' is written '%%%%')
password = %(password)s
certificate = %(certificate)s
key = %(key)s
ca = %(ca)s

[logging]
syslog = true
"""


def _ask(args, label, default, secret=False):
    """``default``, or what the user types for ``label`` when we may ask."""
    if args.yes or not sys.stdin.isatty():
        return default
    try:
        if secret:
            answer = getpass.getpass("%s (input hidden; empty for a random one): "
                                     % label)
        else:
            answer = input("%s [%s]: " % (label, default))
    except EOFError:
        return default
    return answer.strip() or default


def _confirm(args, question):
    if args.force:
        return True
    if args.yes or not sys.stdin.isatty():
        return False
    try:
        return input("%s [y/N]: " % question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def cmd_init(args):
    """A repository skeleton, bcfg2.conf, CA and server certificate."""
    setup_logging_quiet()
    hostname = args.hostname or _ask(args, "Server host name", socket.getfqdn())
    url = args.server_url or _ask(args, "Server URL", "https://%s:6789" % hostname)
    if "://" not in url:
        url = "https://" + url
    from urllib.parse import urlsplit
    try:
        url_host, url_port = urlsplit(url).hostname, urlsplit(url).port
    except ValueError:
        url_host = url_port = None
    if not url_host or not url_port:
        fail("bcfg2-cherry admin: server URL %s needs a host and a port" % url, status=2)
    repo = os.path.abspath(args.directory or _ask(args, "Repository directory",
                                                  "/var/lib/bcfg2"))
    conf = os.path.abspath(args.conf or args.config or _ask(
        args, "bcfg2.conf to write", "/etc/bcfg2.conf"))
    tls_dir = os.path.abspath(args.tls_dir or _ask(
        args, "Directory for the CA and server certificate",
        os.path.join(os.path.dirname(conf), "bcfg2-tls")))
    password = args.init_password
    if password is None:
        password = _ask(args, "Global client password", "", secret=True) or \
            secrets.token_urlsafe(18)

    if os.path.isdir(repo) and os.listdir(repo) and not _confirm(
            args, "%s is not empty; write the skeleton into it?" % repo):
        fail("bcfg2-cherry admin: %s exists and is not empty (--force to use it)" % repo)
    if os.path.exists(conf) and not _confirm(args, "%s exists; replace it?" % conf):
        fail("bcfg2-cherry admin: %s exists (--force to replace it)" % conf)
    tls = {name: os.path.join(tls_dir, name) for name in
           ("ca.crt", "ca.key", "server.crt", "server.key")}
    if any(os.path.exists(p) for p in tls.values()) and not _confirm(
            args, "%s holds certificates already; replace them?" % tls_dir):
        fail("bcfg2-cherry admin: %s holds certificates already (--force to replace "
             "them)" % tls_dir)

    try:
        _write_repository(repo, hostname)
        _write_certificates(tls, hostname, url_host)
        os.makedirs(os.path.dirname(conf), exist_ok=True)
        atomic_write(conf, CONF_TEMPLATE % {
            "date": datetime.date.today().isoformat(), "repository": repo,
            "plugins": ", ".join(INIT_PLUGINS), "url": url,
            "password": password.replace("%", "%%"), "certificate": tls["server.crt"],
            "key": tls["server.key"], "ca": tls["ca.crt"]}, mode=0o600)
    except OSError as err:
        fail("bcfg2-cherry admin: init failed: %s" % err)
    _out("repository  %s" % repo)
    _out("bcfg2.conf  %s" % conf)
    _out("CA          %s (key %s)" % (tls["ca.crt"], tls["ca.key"]))
    _out("server      %s (key %s) for %s" % (tls["server.crt"], tls["server.key"],
                                             hostname))
    _out("start it with: bcfg2-cherry serve -C %s" % conf)


def setup_logging_quiet():
    """Warnings to stderr, for commands that read no bcfg2.conf."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def _write_repository(repo, hostname):
    files = {
        os.path.join("Metadata", "groups.xml"): GROUPS_XML,
        os.path.join("Metadata", "clients.xml"): CLIENTS_XML % hostname,
        os.path.join("Bundler", "basic.xml"): BUNDLE_XML,
        os.path.join("Rules", "rules.xml"): RULES_XML,
    }
    for sub in INIT_PLUGINS + ("etc",):
        os.makedirs(os.path.join(repo, sub), exist_ok=True)
    for name, text in files.items():
        path = os.path.join(repo, name)
        if not os.path.exists(path):
            atomic_write(path, text, mode=0o644)


def _write_certificates(tls, hostname, url_host):
    """A CA, and a server certificate it signs for the host name and URL host."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(os.path.dirname(tls["ca.crt"]), mode=0o755, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(hours=1)

    def key_pem(key):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bcfg2"),
                         x509.NameAttribute(NameOID.COMMON_NAME,
                                            ("Bcfg2 CA for %s" % hostname)[:64])])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256()))

    names = []
    for host in (hostname, url_host, "localhost", "127.0.0.1", "::1"):
        try:
            entry = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            entry = x509.DNSName(host)
        if entry not in names:
            names.append(entry)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                    hostname[:64])]))
        .issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        # clientAuth too: a client that reads this bcfg2.conf presents this certificate
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256()))

    atomic_write(tls["ca.key"], key_pem(ca_key), mode=0o600)
    atomic_write(tls["server.key"], key_pem(server_key), mode=0o600)
    atomic_write(tls["ca.crt"], ca_cert.public_bytes(serialization.Encoding.PEM),
                 mode=0o644)
    atomic_write(tls["server.crt"], server_cert.public_bytes(serialization.Encoding.PEM),
                 mode=0o644)
