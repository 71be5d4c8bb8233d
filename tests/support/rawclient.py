"""A test client that behaves exactly like the upstream Bcfg2 client on the wire.

Every call opens a new TCP (+TLS) connection and sends ``POST /RPC2`` with HTTP Basic
auth and the upstream headers in upstream's order (wire/README.md observation 1):
Host, Authorization, Accept-Encoding: gzip, Content-Type: text/xml,
User-Agent: Python-xmlrpc/3.11, Content-Length. It can also send any raw bytes (the
recorded upstream requests) and malformed requests, and it reports status, headers and
body as received, so tests can check the HTTP level too.
"""
import base64
import http.client
import socket
import ssl
import xmlrpc.client

UPSTREAM_USER_AGENT = "Python-xmlrpc/3.11"


class HTTPStatusError(Exception):
    """A call was answered with an HTTP status other than 200."""

    def __init__(self, response):
        Exception.__init__(self, "HTTP %s %s" % (response.status, response.reason))
        self.status = response.status
        self.response = response


class Response:
    """One HTTP response: ``status``, ``reason``, ``headers`` (case-insensitive),
    ``body`` (bytes), ``version`` (10 or 11) and ``raw_headers`` ([(name, value)])."""

    def __init__(self, resp, body):
        self.status = resp.status
        self.reason = resp.reason
        self.version = resp.version
        self.headers = resp.headers
        self.raw_headers = list(resp.headers.items())
        self.body = body

    def value(self):
        """The XML-RPC result; raises xmlrpc.client.Fault or HTTPStatusError."""
        if self.status != 200:
            raise HTTPStatusError(self)
        return xmlrpc.client.loads(self.body.decode("utf-8"), use_builtin_types=True)[0][0]

    def __repr__(self):
        return "<Response %s %r>" % (self.status, self.body[:80])


def basic_auth(user, password):
    """The ``Authorization`` header value upstream sends."""
    token = ("%s:%s" % (user, password)).encode("utf-8")
    return "Basic " + base64.b64encode(token).decode("ascii")


def request_bytes(host, port, body, auth=None, method="POST", path="/RPC2", extra=()):
    """A request as the upstream client writes it (``auth`` None: no Authorization)."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%s" % (host, port)]
    if auth is not None:
        lines.append("Authorization: %s" % auth)
    lines += ["Accept-Encoding: gzip", "Content-Type: text/xml",
              "User-Agent: %s" % UPSTREAM_USER_AGENT]
    lines += ["%s: %s" % item for item in extra]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def call_body(method, *params):
    """The methodCall body the upstream client sends."""
    return xmlrpc.client.dumps(tuple(params), method, allow_none=True).encode("utf-8")


class RawClient:
    """Talks to one server like the upstream client does.

    ``scheme`` "https" (``ca`` verifies the server; ``cert``/``key`` is the client
    certificate) or "http" (a reverse-proxy backend). ``source_address`` binds the
    client side (e.g. "127.0.0.2" to be another loopback client).
    """

    def __init__(self, host, port, *, scheme="https", ca=None, cert=None, key=None,
                 user="root", password=None, timeout=15.0, source_address=None):
        self.host, self.port, self.scheme = host, port, scheme
        self.user, self.password = user, password
        self.timeout = timeout
        self.source_address = source_address
        self.context = None
        if scheme == "https":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.check_hostname = False
            if ca:
                ctx.load_verify_locations(cafile=ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
            else:
                ctx.verify_mode = ssl.CERT_NONE
            if cert and key:
                ctx.load_cert_chain(cert, key)
            self.context = ctx

    def with_credentials(self, user=None, password=None, cert=None, key=None):
        """A copy of this client with other credentials (same server, same CA)."""
        other = RawClient.__new__(RawClient)
        other.__dict__.update(self.__dict__)
        if user is not None:
            other.user = user
        if password is not None:
            other.password = password
        if cert and key:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.check_hostname = False
            ctx.verify_mode = self.context.verify_mode
            if self.context.verify_mode != ssl.CERT_NONE:
                ctx.load_verify_locations(cadata=self._ca_data())
            ctx.load_cert_chain(cert, key)
            other.context = ctx
        return other

    def _ca_data(self):
        return "".join(ssl.DER_cert_to_PEM_cert(der)
                       for der in self.context.get_ca_certs(binary_form=True))

    @property
    def auth(self):
        if self.user is None or self.password is None:
            return None
        return basic_auth(self.user, self.password)

    def connect(self):
        """A new connection (TLS handshake done)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            if self.source_address:
                sock.bind((self.source_address, 0))
            sock.connect((self.host, self.port))
            if self.context is not None:
                sock = self.context.wrap_socket(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def send(self, raw):
        """Send raw request bytes on a new connection; return the Response."""
        sock = self.connect()
        try:
            try:
                sock.sendall(raw)
            except (ssl.SSLError, OSError):
                # a server refusing a body (413) may answer and close before it has
                # read all of it: the answer is still there to read
                pass
            resp = http.client.HTTPResponse(sock, method="POST")
            resp.begin()
            body = resp.read()
            return Response(resp, body)
        finally:
            sock.close()

    def request(self, body=b"", method="POST", path="/RPC2", auth=True, extra=()):
        """An upstream-style request; ``auth`` True uses this client's credentials, a
        string is sent as the Authorization value, False/None sends none."""
        if auth is True:
            auth = self.auth
        elif auth is False:
            auth = None
        return self.send(request_bytes(self.host, self.port, body, auth=auth,
                                       method=method, path=path, extra=extra))

    def call(self, method, *params, path="/RPC2"):
        """Call ``method``; return its value, raise Fault or HTTPStatusError."""
        return self.request(call_body(method, *params), path=path).value()

    def client_run(self, version="1.4.0pre2", profile=None, decision=None,
                   probe_output=None, stats=True):
        """The calls of one upstream client run, in upstream's order; returns
        ``{method: value}``. ``probe_output`` maps probe names to their stdout.
        """
        import lxml.etree
        results = {}
        if profile:
            results["AssertProfile"] = self.call("AssertProfile", profile)
        results["DeclareVersion"] = self.call("DeclareVersion", version)
        results["GetProbes"] = probes = self.call("GetProbes")
        probe_output = probe_output or {}
        names = [(p.get("name"), p.get("source"))
                 for p in lxml.etree.fromstring(probes.encode("utf-8"))]
        if names:
            data = lxml.etree.Element("ProbeData")
            for name, source in names:
                el = lxml.etree.SubElement(data, "probe-data", name=name, source=source)
                el.text = probe_output.get(name, "")
            results["RecvProbeData"] = self.call(
                "RecvProbeData", lxml.etree.tostring(data, encoding="unicode"))
        if decision:
            results["GetDecisionList"] = self.call("GetDecisionList", decision)
        results["GetConfig"] = config = self.call("GetConfig")
        if stats:
            results["RecvStats"] = self.call("RecvStats", statistics_document(config))
        return results


def statistics_document(config_text, state="clean"):
    """A small but complete upload-statistics document for a Configuration."""
    import lxml.etree
    config = lxml.etree.fromstring(config_text.encode("utf-8"))
    up = lxml.etree.Element("upload-statistics")
    entries = [e for s in config for e in s if isinstance(e.tag, str)]
    st = lxml.etree.SubElement(up, "Statistics", total=str(len(entries)),
                               good=str(len(entries)), version="2.0",
                               revision=config.get("revision", "-1"), state=state)
    flags = lxml.etree.SubElement(st, "Flags")
    lxml.etree.SubElement(flags, "Flag", name="dry_run", value="True")
    lxml.etree.SubElement(st, "Modified")
    lxml.etree.SubElement(st, "Extra")
    good = lxml.etree.SubElement(st, "Good")
    for entry in entries:
        copy = lxml.etree.SubElement(good, entry.tag, dict(entry.attrib))
        copy.set("qtext", "")
    lxml.etree.SubElement(st, "Bad")
    lxml.etree.SubElement(st, "OpStamps", start="1700000000.1", finished="1700000001.9")
    return lxml.etree.tostring(up, encoding="unicode")
