"""Exceptions and fault codes shared by the Core and the network cores."""
from xmlrpc.client import Fault  # noqa: F401  (re-exported: the one Fault type we use)

#: Fault codes (XML-RPC "specification for fault code interoperability" plus upstream's)
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_ERROR = -32500
#: what upstream's builtin core uses for an unexpected exception in a method
GENERIC_FAULT = 1


class CoreInitError(Exception):
    """Raised when the server core cannot be initialized."""


class NoExposedMethod(Exception):
    """Raised when an XML-RPC method is called that is not exposed under that name."""


class AuthenticationFailure(Exception):
    """A request failed authentication or an ACL; network cores answer HTTP 401."""


class RequestError(Exception):
    """A request is malformed at the HTTP/XML-RPC level; ``status`` is the HTTP status."""

    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
