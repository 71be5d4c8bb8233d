"""Who is the client behind a TLS-terminating reverse proxy (``[server] trusted_proxies``).

Only a request whose peer is a trusted proxy may say who the client is: its address is
the *last* ``X-Forwarded-For`` entry (the one the proxy itself added; earlier entries
come from the client and prove nothing), and its certificate is the PEM in
``[server] client_cert_header`` when ``[server] client_verify_header`` says ``SUCCESS``
(nginx: ``$ssl_client_escaped_cert`` and ``$ssl_client_verify``). From any other peer
those headers are ignored. CherryPy's own ``tools.proxy`` believes anyone and takes the
first entry, so it must stay off for the Bcfg2 application.
"""
import ipaddress
import logging

from bcfg2_cherry.server.errors import RequestError
from bcfg2_cherry.server.tls import pem_to_dict

logger = logging.getLogger(__name__)

FORWARDED_FOR = "X-Forwarded-For"


def normalize_ip(ip):
    """``::ffff:10.0.0.1`` -> ``10.0.0.1``; anything unparsable is returned unchanged."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except (ValueError, AttributeError):
        return ip
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class ProxyPolicy:
    """Decides the client address and certificate of one request."""

    def __init__(self, trusted=(), cert_header="X-SSL-Client-Cert",
                 verify_header="X-SSL-Client-Verify"):
        self.trusted = [ipaddress.ip_network(net, strict=False) if isinstance(net, str)
                        else net for net in trusted or ()]
        self.cert_header = cert_header or "X-SSL-Client-Cert"
        self.verify_header = verify_header or "X-SSL-Client-Verify"

    @classmethod
    def from_settings(cls, setup):
        return cls(setup.trusted_proxies, setup.client_cert_header,
                   setup.client_verify_header)

    def is_trusted(self, ip):
        """True if ``ip`` is one of ``[server] trusted_proxies``."""
        if not self.trusted:
            return False
        try:
            addr = ipaddress.ip_address(normalize_ip(ip))
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)

    def resolve(self, peer, headers, tls_cert=None):
        """``((ip, port), cert)`` of the client.

        ``peer`` is the socket's ``(ip, port)``; ``headers`` any mapping with a
        case-insensitive ``get`` (CherryPy's request headers); ``tls_cert`` the
        certificate of the TLS connection itself.
        """
        ip, port = normalize_ip(peer[0]), peer[1]
        if not self.is_trusted(ip):
            return (ip, port), tls_cert
        forwarded = headers.get(FORWARDED_FOR)
        if forwarded:
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            if hops:
                last = normalize_ip(hops[-1])
                try:
                    ipaddress.ip_address(last)
                except ValueError:
                    raise RequestError(400, "the trusted proxy %s sent an invalid %s "
                                       "address %r" % (ip, FORWARDED_FOR, hops[-1])) \
                        from None
                ip = last
        # the proxy's own TLS certificate (if it presents one to us) is not the client's
        cert = None
        verify = (headers.get(self.verify_header) or "").strip()
        pem = headers.get(self.cert_header)
        if verify == "SUCCESS" and pem:
            cert = pem_to_dict(pem)
        elif pem:
            logger.info("Ignoring the client certificate forwarded for %s: %s is %r",
                        ip, self.verify_header, verify)
        return (ip, port), cert
