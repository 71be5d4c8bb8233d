"""TLS for the network cores: the server SSL context built from ``[communication]``,
a cheroot adapter that moves handshakes off the accepting thread, certificate
parsing into ``ssl.SSLSocket.getpeercert()`` form, and the demo mode's generated CA.

``[communication] protocol`` mapping (upstream's values keep working, none of them
allows less than TLS 1.2):

=================  ==========================================================
``xmlrpc/ssl``     negotiate the best version both sides have, TLS 1.2 at least
``xmlrpc/tlsv1``   the same (upstream pinned TLS 1.0, which OpenSSL 3 refuses)
``xmlrpc/tlsv1_2`` the same, spelled out
``xmlrpc/tlsv1_3`` TLS 1.3 only
anything else      refused at start-up (as upstream's builtin core does)
=================  ==========================================================
"""
import datetime
import ipaddress
import logging
import os
import socket
import ssl
from urllib.parse import unquote

from cheroot.errors import FatalSSLAlert
from cheroot.ssl.builtin import BuiltinSSLAdapter

from bcfg2_cherry.server.errors import CoreInitError

logger = logging.getLogger(__name__)

#: ``[communication] protocol`` -> lowest TLS version accepted
PROTOCOLS = {
    "xmlrpc/ssl": ssl.TLSVersion.TLSv1_2,
    "xmlrpc/tlsv1": ssl.TLSVersion.TLSv1_2,
    "xmlrpc/tlsv1_2": ssl.TLSVersion.TLSv1_2,
    "xmlrpc/tlsv1_3": ssl.TLSVersion.TLSv1_3,
}

#: WSGI environ key under which the deferred adapter leaves ``getpeercert()``
PEERCERT_ENVIRON = "bcfg2_cherry.peercert"


def minimum_version(protocol):
    """The lowest TLS version for a ``[communication] protocol`` value."""
    try:
        return PROTOCOLS[(protocol or "xmlrpc/ssl").strip().lower()]
    except KeyError:
        raise CoreInitError("[communication] protocol = %s is not supported; use one "
                            "of %s" % (protocol, ", ".join(sorted(PROTOCOLS)))) from None


class ServerContext(ssl.SSLContext):
    """An SSLContext that lists its ciphers once.

    cheroot's builtin adapter calls ``get_ciphers()`` for every connection (to find
    ``SSL_CIPHER_ALGKEYSIZE``), and building that list of dicts costs more than the
    rest of the connection's WSGI environ. The list only changes with ``set_ciphers``;
    callers get copies, as from the plain method.
    """

    _cipher_list = None

    def get_ciphers(self):
        ciphers = self._cipher_list
        if ciphers is None:
            ciphers = self._cipher_list = ssl.SSLContext.get_ciphers(self)
        return [dict(cipher) for cipher in ciphers]

    def set_ciphers(self, specification, /):
        self._cipher_list = None
        ssl.SSLContext.set_ciphers(self, specification)


def server_context(certificate, key, ca=None, protocol="xmlrpc/ssl"):
    """The server's SSLContext: TLS 1.2 or newer; with ``ca``, a client certificate is
    asked for (not required) and, when one is sent, verified against ``ca``.

    Raises CoreInitError naming the file that is missing or unusable.
    """
    for label, path in (("certificate", certificate), ("key", key), ("ca", ca)):
        if label != "ca" or path:
            if not path or not os.access(path, os.R_OK):
                raise CoreInitError("[communication] %s = %s: not a readable file"
                                    % (label, path))
    ctx = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minimum_version(protocol)
    try:
        ctx.load_cert_chain(certificate, key)
        if ca:
            ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as err:
        raise CoreInitError("Cannot load the TLS certificate, key or CA (%s, %s, %s): %s"
                            % (certificate, key, ca, err)) from None
    ctx.verify_mode = ssl.CERT_OPTIONAL if ca else ssl.CERT_NONE
    return ctx


class DeferredHandshakeAdapter(BuiltinSSLAdapter):
    """cheroot's builtin adapter, except that ``wrap`` does not do the handshake.

    cheroot calls ``wrap`` on the thread that accepts connections, so one peer that
    never finishes its handshake stalls every new connection. Here the handshake is
    left to ``handshake_step``, which the server (``cherrypy_core.HTTPServer``) runs
    without blocking whenever the socket is readable; the environ entries are filled
    in when it completes.
    """

    def wrap(self, sock):
        """Wrap without handshaking; return the socket and an environ to fill later."""
        try:
            wrapped = self.context.wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
        except OSError as err:
            raise FatalSSLAlert(*err.args) from err
        wrapped.bcfg2_handshake_pending = True
        return wrapped, {}

    def handshake_step(self, sock, environ):
        """Advance the handshake of ``sock`` without blocking.

        Returns ``"read"`` or ``"write"`` when it must wait for the socket, ``None``
        when the handshake is complete (``environ`` then holds the SSL_* entries and
        the peer certificate). Raises ssl.SSLError / OSError when it failed.
        """
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            return "read"
        except ssl.SSLWantWriteError:
            return "write"
        finally:
            sock.settimeout(timeout)
        sock.bcfg2_handshake_pending = False
        environ.update(self.get_environ(sock))
        if self.context.verify_mode != ssl.CERT_NONE:
            peercert = sock.getpeercert()
            if peercert:
                environ[PEERCERT_ENVIRON] = peercert
        return None


# -- certificates in getpeercert() form ------------------------------------------------

def _oid_names():
    from cryptography.x509.oid import NameOID
    return {
        NameOID.COMMON_NAME: "commonName",
        NameOID.COUNTRY_NAME: "countryName",
        NameOID.LOCALITY_NAME: "localityName",
        NameOID.STATE_OR_PROVINCE_NAME: "stateOrProvinceName",
        NameOID.STREET_ADDRESS: "streetAddress",
        NameOID.ORGANIZATION_NAME: "organizationName",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnitName",
        NameOID.SERIAL_NUMBER: "serialNumber",
        NameOID.SURNAME: "surname",
        NameOID.GIVEN_NAME: "givenName",
        NameOID.TITLE: "title",
        NameOID.EMAIL_ADDRESS: "emailAddress",
        NameOID.DOMAIN_COMPONENT: "domainComponent",
        NameOID.USER_ID: "userId",
    }


def _name_tuple(name, names):
    return tuple(tuple((names.get(attr.oid, attr.oid.dotted_string), attr.value)
                       for attr in rdn)
                 for rdn in name.rdns)


def _asn1_time(when):
    """``Jan  5 09:34:43 2030 GMT``, as OpenSSL prints it."""
    return "%s %2d %s" % (when.strftime("%b"), when.day, when.strftime("%H:%M:%S %Y GMT"))


def _serial_hex(serial):
    """A serial number as ``getpeercert()`` writes it: upper-case hex of whole bytes
    (an odd number of digits gets a leading 0)."""
    text = "%X" % serial
    return "0" + text if len(text) % 2 else text


def cert_to_dict(cert):
    """A ``cryptography`` certificate as ``ssl.SSLSocket.getpeercert()`` returns one:
    ``{"subject": ((("commonName", "host"),),), "subjectAltName": (("DNS", ..),), ...}``.
    """
    from cryptography import x509
    names = _oid_names()
    result = {
        "subject": _name_tuple(cert.subject, names),
        "issuer": _name_tuple(cert.issuer, names),
        "version": cert.version.value + 1,
        "serialNumber": _serial_hex(cert.serial_number),
        "notBefore": _asn1_time(cert.not_valid_before_utc),
        "notAfter": _asn1_time(cert.not_valid_after_utc),
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        alt = []
        for gen in san:
            if isinstance(gen, x509.DNSName):
                alt.append(("DNS", gen.value))
            elif isinstance(gen, x509.IPAddress):
                alt.append(("IP Address", str(gen.value)))
            elif isinstance(gen, x509.RFC822Name):
                alt.append(("email", gen.value))
            elif isinstance(gen, x509.UniformResourceIdentifier):
                alt.append(("URI", gen.value))
        result["subjectAltName"] = tuple(alt)
    return result


def pem_to_dict(pem):
    """A PEM certificate (str or bytes; URL-escaped as nginx's
    ``$ssl_client_escaped_cert`` is fine) in getpeercert() form; None if unparsable.
    """
    from cryptography import x509
    if isinstance(pem, bytes):
        pem = pem.decode("ascii", "replace")
    if "%" in pem:
        pem = unquote(pem)
    try:
        return cert_to_dict(x509.load_pem_x509_certificate(pem.strip().encode("ascii")))
    except (ValueError, UnicodeEncodeError) as err:
        logger.warning("Ignoring an unparsable client certificate: %s", err)
        return None


def peercert_from_environ(environ):
    """The verified TLS client certificate of a WSGI request, in getpeercert() form.

    Ours (``DeferredHandshakeAdapter``) leaves it ready; any other cheroot builtin
    adapter with ``verify_mode`` set leaves the PEM in ``SSL_CLIENT_CERT``.
    """
    cert = environ.get(PEERCERT_ENVIRON)
    if cert:
        return cert
    if environ.get("SSL_CLIENT_VERIFY") == "SUCCESS" and environ.get("SSL_CLIENT_CERT"):
        return pem_to_dict(environ["SSL_CLIENT_CERT"])
    return None


# -- the demo mode's certificates -----------------------------------------------------

def default_state_dir():
    """``$XDG_STATE_HOME/bcfg2-cherry``, else ``~/.local/state/bcfg2-cherry``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "bcfg2-cherry")


def _write(path, data, mode):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _still_good(cert_path, names):
    from cryptography import x509
    try:
        with open(cert_path, "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | \
        {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    return set(names) <= have and cert.not_valid_after_utc > soon


def ensure_demo_certificates(state_dir, names=("localhost", "127.0.0.1", "::1")):
    """A CA and a server certificate it signed, generated once into ``state_dir/tls``.

    Returns ``{"ca": path, "certificate": path, "key": path}``. Files are reused
    while the certificate covers ``names`` and is valid for 30 more days.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls_dir = os.path.join(state_dir, "tls")
    paths = {"ca": os.path.join(tls_dir, "ca.crt"),
             "certificate": os.path.join(tls_dir, "server.crt"),
             "key": os.path.join(tls_dir, "server.key")}
    names = list(dict.fromkeys(list(names) + [socket.gethostname()]))
    if all(os.path.exists(p) for p in paths.values()) and \
            _still_good(paths["certificate"], names):
        return paths
    os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    pem_key = serialization.PrivateFormat.PKCS8

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bcfg2-cherry demo"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "bcfg2-cherry demo CA")])
    ca_cert = (x509.CertificateBuilder()
               .subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_cert_sign=True, crl_sign=True,
                   content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, encipher_only=False,
                   decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                   ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    alt = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))

    _write(os.path.join(tls_dir, "ca.key"), ca_key.private_bytes(
        serialization.Encoding.PEM, pem_key, serialization.NoEncryption()), 0o600)
    _write(paths["ca"], ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(paths["key"], key.private_bytes(
        serialization.Encoding.PEM, pem_key, serialization.NoEncryption()), 0o600)
    _write(paths["certificate"], cert.public_bytes(serialization.Encoding.PEM), 0o644)
    logger.info("Generated a demo CA and server certificate in %s", tls_dir)
    return paths
