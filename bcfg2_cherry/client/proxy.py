"""A Bcfg2 protocol proxy: XML-RPC over HTTPS the way the upstream client sends it.

Every call is one POST to ``/RPC2`` on a new TLS connection, with the headers upstream's
client sends, in the same order (spec/protocol.md §1-§3, wire/README.md observation 1).

Differences from upstream, on purpose:

- Retries (``retries`` attempts in all, ``retry_delay`` doubling each time) happen only
  for connection failures (refused, reset, timed out, DNS) and HTTP 503 (the server did
  not take the call: starting up). A Fault, any other HTTP status such as 401 and a
  certificate that fails verification are final at once: repeating them gives the
  same answer. A failure after the request was sent is retried only for
  methods in ``REPEATABLE``, so a RecvStats or RecvProbeData never arrives twice.
- ``retries = 0`` still makes one attempt (upstream made none and returned nothing).
- The Authorization header carries the user name and password exactly; upstream turned
  a space into ``+`` (such passwords never worked against any server).
- TLS 1.2 or newer whatever ``protocol`` says (upstream's ``xmlrpc/tlsv1`` is TLS 1.0).
- ``server_cns`` is checked even without a CA (upstream silently skipped it then).
"""
import base64
import http.client
import logging
import socket
import ssl
import time
import xmlrpc.client
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

#: Methods that may be sent again when the connection broke after the request went out.
REPEATABLE = frozenset({
    "DeclareVersion", "GetProbes", "GetConfig", "GetDecisionList", "listMethods",
    "methodHelp", "get_statistics", "set_debug", "set_core_debug", "set_fam_debug",
    "expire_metadata_cache", "Metadata.list_clients", "system.listMethods",
    "system.methodHelp", "system.methodSignature"})

#: The longest sleep between two attempts, however many retries are configured.
MAX_RETRY_DELAY = 30.0


class ProxyError(Exception):
    """A call could not be completed; ``str()`` is one line that says why."""


class ConnectionFailure(ProxyError):
    """The server could not be reached (refused, reset, timed out, unknown host)."""


class TLSError(ProxyError):
    """The TLS handshake failed: certificate problem, client key, protocol."""


class CertificateNameError(TLSError):
    """The server certificate's commonName is not one of ``server_cns``."""

    def __init__(self, common_name, allowed):
        TLSError.__init__(self, "server certificate commonName %r is not one of the "
                          "allowed serverCommonNames (%s)"
                          % (common_name, ", ".join(allowed)))
        self.common_name = common_name


class HTTPError(ProxyError):
    """The server answered with an HTTP status other than 200."""

    def __init__(self, status, reason, message):
        ProxyError.__init__(self, message)
        self.status = status
        self.reason = reason


class AuthenticationError(HTTPError):
    """HTTP 401: the server refused the credentials, the address or the method."""


class ServerFault(ProxyError, xmlrpc.client.Fault):
    """An XML-RPC Fault; ``code``/``message`` (also ``faultCode``/``faultString``)."""

    def __init__(self, code, message):
        xmlrpc.client.Fault.__init__(self, code, message)
        ProxyError.__init__(self, "server fault %s: %s" % (code, message))
        self.code = code
        self.message = message

    def __str__(self):
        return "server fault %s: %s" % (self.code, self.message)


def _common_name(der):
    """The subject commonName of a DER certificate, or None."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else None


class _Connection(http.client.HTTPSConnection):
    """One HTTPS connection that checks the server commonName after the handshake."""

    def __init__(self, host, port, server_cns, **kwargs):
        http.client.HTTPSConnection.__init__(self, host, port, **kwargs)
        self.server_cns = server_cns
        #: set once the request line and headers have been handed to the socket
        self.request_sent = False

    def connect(self):
        http.client.HTTPSConnection.connect(self)
        if self.server_cns:
            name = _common_name(self.sock.getpeercert(binary_form=True) or b"")
            if name not in self.server_cns:
                raise CertificateNameError(name, self.server_cns)


class Proxy:
    """Calls methods on a Bcfg2 server: ``proxy.GetConfig()``, ``proxy.call(name, *args)``.

    Dotted names work as attributes too: ``proxy.Metadata.list_clients()``.
    """

    def __init__(self, url="https://localhost:6789", user="root", password=None, ca=None,
                 cert=None, key=None, server_cns=(), timeout=90.0, retries=3,
                 retry_delay=1.0, source_address=None):
        if "://" not in url:
            url = "https://" + url
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ProxyError("server URL %s: only https is supported" % url)
        if not parts.hostname:
            raise ProxyError("server URL %s has no host" % url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not port:
            raise ProxyError("server URL %s needs an explicit port (e.g. :6789)" % url)
        self.host, self.port = parts.hostname, port
        self.url = "https://%s:%s" % (
            "[%s]" % self.host if ":" in self.host else self.host, self.port)
        self.user = user
        self.password = password
        if user and password:
            # upstream rebuilds the URL from host and port only: always /RPC2
            self.path = "/RPC2"
            token = ("%s:%s" % (user, password)).encode("utf-8")
            self._auth = "Basic " + base64.b64encode(token).decode("ascii")
        else:
            self.path = parts.path or "/RPC2"
            self._auth = None
            logger.warning("no password configured: calls are sent without "
                           "credentials and a Bcfg2 server will refuse them")
        self.server_cns = list(server_cns or ())
        self.timeout = float(timeout) if timeout else None
        self.retries = max(1, int(retries or 1))
        self.retry_delay = max(0.0, float(retry_delay or 0))
        self.source_address = (source_address, 0) if source_address else None
        self.ca = ca
        self.cert = cert if cert and key else None
        self._context = self._make_context(ca, cert, key)

    @classmethod
    def from_settings(cls, settings, **overrides):
        """A proxy configured from bcfg2.conf as the upstream client reads it.

        ``[communication] key``/``certificate`` count only when set in the file (their
        defaults are the server's own files). ``overrides`` win over the file.
        """
        kwargs = dict(
            url=settings.server_url, user=settings.comm_user,
            password=settings.password, ca=settings.ca,
            cert=settings.getpath("communication", "certificate"),
            key=settings.getpath("communication", "key"),
            server_cns=settings.server_cns, timeout=settings.timeout,
            retries=settings.retries, retry_delay=settings.retry_delay)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    # -- TLS

    @staticmethod
    def _make_context(ca, cert, key):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # like upstream: the CA decides, not the host name in the URL
        context.check_hostname = False
        if ca:
            try:
                context.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as err:
                raise TLSError("cannot load the CA certificate %s: %s"
                               % (ca, _reason(err))) from None
            context.verify_mode = ssl.CERT_REQUIRED
        else:
            context.verify_mode = ssl.CERT_NONE
            logger.warning("no CA configured ([communication] ca): the server "
                           "certificate is not verified")
        if cert and key:
            try:
                context.load_cert_chain(certfile=cert, keyfile=key)
            except (OSError, ssl.SSLError) as err:
                raise TLSError("cannot load the client certificate %s with key %s: %s"
                               % (cert, key, _reason(err))) from None
        elif cert or key:
            logger.warning("a client certificate needs both certificate and key; "
                           "presenting none")
        return context

    # -- calls

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    def call(self, method, *params):
        """Call ``method`` with ``params``; return the result or raise ProxyError."""
        body = xmlrpc.client.dumps(params, method, encoding="utf-8",
                                   allow_none=True).encode("utf-8", "xmlcharrefreplace")
        delay = self.retry_delay
        for attempt in range(1, self.retries + 1):
            try:
                return self._request(method, body)
            except _Retryable as failure:
                err = failure.error
                last = attempt >= self.retries or (
                    failure.sent and method not in REPEATABLE)
                if last:
                    raise err from None
                logger.info("%s (attempt %d of %d); retrying in %.1f s",
                            err, attempt, self.retries, delay)
                time.sleep(delay)
                delay = min(MAX_RETRY_DELAY, delay * 2 if delay else 0)
        raise AssertionError("unreachable")

    def _request(self, method, body):
        conn = _Connection(self.host, self.port, self.server_cns, timeout=self.timeout,
                           context=self._context, source_address=self.source_address)
        try:
            try:
                conn.connect()
                # the exact header order of xmlrpc.client, which upstream uses
                conn.putrequest("POST", self.path, skip_accept_encoding=True)
                if self._auth:
                    conn.putheader("Authorization", self._auth)
                conn.putheader("Accept-Encoding", "gzip")
                conn.putheader("Content-Type", "text/xml")
                conn.putheader("User-Agent", xmlrpc.client.Transport.user_agent)
                conn.putheader("Content-Length", str(len(body)))
                conn.request_sent = True
                conn.endheaders(body)
                response = conn.getresponse()
                data = response.read()
            except CertificateNameError:
                raise
            except ssl.SSLCertVerificationError as err:
                raise TLSError("TLS failure with %s: the server certificate failed "
                               "verification: %s%s" % (
                                   self.url, err.verify_message or _reason(err),
                                   _ca_hint(self.ca))) from None
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as err:
                # TLS 1.3: a server that refuses our certificate just closes
                hint = ""
                if self.cert:
                    hint = ("; it may have refused our client certificate %s (is it "
                            "signed by the server's CA?)" % self.cert)
                raise _Retryable(TLSError(
                    "TLS failure with %s: the server closed the connection (%s)%s"
                    % (self.url, _reason(err), hint)), conn.request_sent) from None
            except ssl.SSLError as err:
                raise TLSError("TLS failure with %s: %s" % (self.url, _tls_reason(err))
                               ) from None
            except ConnectionRefusedError:
                raise _Retryable(ConnectionFailure(
                    "connection refused by %s (is the server running?)" % self.url),
                    False) from None
            except socket.gaierror as err:
                raise _Retryable(ConnectionFailure(
                    "cannot resolve %s: %s" % (self.host, err.strerror or err)),
                    False) from None
            except (socket.timeout, TimeoutError):
                raise _Retryable(ConnectionFailure(
                    "no answer from %s within %s s" % (self.url, self.timeout)),
                    conn.request_sent) from None
            except (OSError, http.client.HTTPException) as err:
                raise _Retryable(ConnectionFailure(
                    "connection to %s failed: %s" % (self.url, _reason(err))),
                    conn.request_sent) from None
        finally:
            conn.close()
        return self._parse(method, response, data)

    def _parse(self, method, response, data):
        if response.status == 401:
            raise AuthenticationError(
                401, response.reason,
                "authentication denied by %s (HTTP 401) calling %s as user %r: check "
                "the password, and that this client's name or address is known to the "
                "server and may call this method" % (self.url, method, self.user))
        if response.status == 503:
            # the server did not take the call (starting, overloaded): safe to repeat
            raise _Retryable(HTTPError(
                503, response.reason, "%s is not ready (HTTP 503 %s) for %s" % (
                    self.url, response.reason, method)), False)
        if response.status != 200:
            raise HTTPError(response.status, response.reason,
                            "%s answered HTTP %s %s calling %s" % (
                                self.url, response.status, response.reason, method))
        if response.getheader("Content-Encoding", "").lower() == "gzip":
            try:
                data = xmlrpc.client.gzip_decode(data, max_decode=-1)
            except (OSError, ValueError) as err:
                raise ProxyError("%s sent a bad gzip body: %s" % (self.url, err)) from None
        try:
            params, _name = xmlrpc.client.loads(data, use_builtin_types=True)
        except xmlrpc.client.Fault as fault:
            raise ServerFault(fault.faultCode, fault.faultString) from None
        except Exception as err:  # expat, value and type errors from the unmarshaller
            raise ProxyError("%s sent an answer to %s that is not XML-RPC: %s"
                             % (self.url, method, err)) from None
        return params[0] if params else None

    def __repr__(self):
        return "<Proxy %s user=%s>" % (self.url, self.user)


class _Method:
    """A bound remote method; attribute access extends the dotted name."""

    def __init__(self, proxy, name):
        self._proxy = proxy
        self._name = name

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self._proxy, "%s.%s" % (self._name, name))

    def __call__(self, *params):
        return self._proxy.call(self._name, *params)


class _Retryable(Exception):
    """Internal: a connection failure, and whether the request had gone out."""

    def __init__(self, error, sent):
        Exception.__init__(self, str(error))
        self.error = error
        self.sent = sent


def _reason(err):
    """The most readable part of an OSError/SSLError."""
    return getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err)


def _tls_reason(err):
    reason = str(getattr(err, "reason", "") or err)
    hints = {
        "TLSV1_ALERT_UNKNOWN_CA": "the server does not accept our client certificate "
                                  "(not signed by its CA)",
        "SSLV3_ALERT_BAD_CERTIFICATE": "the server rejected our client certificate",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
        "CERTIFICATE_VERIFY_FAILED": "the server certificate failed verification",
        "WRONG_VERSION_NUMBER": "the server does not speak TLS on this port",
        "UNSUPPORTED_PROTOCOL": "no TLS version in common (TLS 1.2 or newer is needed)",
        "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common (TLS 1.2 or newer is "
                                        "needed)",
    }
    for key, text in hints.items():
        if key in reason.upper():
            return "%s (%s)" % (text, reason)
    return reason


def _ca_hint(ca):
    if ca:
        return " (is %s the CA that signed the server certificate?)" % ca
    return ""
