"""The Bcfg2 protocol client: a proxy for any server method and a dry client run.

Used by ``bcfg2-cherry client`` and ``bcfg2-cherry admin``, and by the tests.
"""
from bcfg2_cherry.client.proxy import (  # noqa: F401
    AuthenticationError,
    CertificateNameError,
    ConnectionFailure,
    HTTPError,
    Proxy,
    ProxyError,
    ServerFault,
    TLSError,
)
from bcfg2_cherry.client.run import ClientRun, RunError, RunResult  # noqa: F401

__all__ = ["Proxy", "ProxyError", "ConnectionFailure", "TLSError",
           "CertificateNameError", "HTTPError", "AuthenticationError", "ServerFault",
           "ClientRun", "RunError", "RunResult"]
