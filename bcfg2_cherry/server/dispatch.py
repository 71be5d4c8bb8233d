"""What every network core shares: reading an XML-RPC call, authenticating and
authorizing it, resolving and running the method, and encoding the answer.

A network core calls ``parse_call`` on the body, ``authorize`` with the credentials it
extracted, ``dispatch`` to run the call and ``encode_result``/``encode_fault`` for the
response. Only exposed Core methods and ``__rmi__`` names can ever be reached.
"""
import base64
import binascii
import inspect
import logging
import time
import types
import weakref
import xmlrpc.client
from xml.parsers.expat import ExpatError

from bcfg2_cherry import statistics
from bcfg2_cherry.server.core import ClientAddress
from bcfg2_cherry.server.errors import (
    GENERIC_FAULT, INVALID_PARAMS, METHOD_NOT_FOUND,
    AuthenticationFailure, Fault, NoExposedMethod, RequestError)

logger = logging.getLogger(__name__)

#: Bodies larger than this are refused with 413 unless the core configures otherwise.
DEFAULT_MAX_REQUEST = 64 * 1024 * 1024


def parse_call(body, max_size=DEFAULT_MAX_REQUEST):
    """``(method, params)`` from an XML-RPC request body (bytes).

    Raises RequestError: 413 over ``max_size``, 400 for anything that is not a
    well-formed UTF-8 XML-RPC methodCall (a DOCTYPE, and so any entity, is refused).
    """
    if len(body) > max_size:
        raise RequestError(413, "request body of %d bytes is over the limit of %d"
                           % (len(body), max_size))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, "request body is not UTF-8: %s" % err) from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise RequestError(400, "XML-RPC requests with a DOCTYPE are refused")
    try:
        params, method = xmlrpc.client.loads(text, use_builtin_types=False)
    except (ExpatError, ValueError, TypeError, IndexError, KeyError,
            xmlrpc.client.ResponseError) as err:
        raise RequestError(400, "malformed XML-RPC request: %s" % err) from None
    if not method or not isinstance(method, str):
        raise RequestError(400, "XML-RPC request has no methodName")
    return method, _plain(params)


def _plain(value):
    """Turn xmlrpc.client wrapper objects into plain Python values."""
    if isinstance(value, xmlrpc.client.Binary):
        return value.data
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _marshallable(value):
    """Sets become arrays, bytes become UTF-8 strings (protocol.md §1)."""
    if isinstance(value, (set, frozenset)):
        return [_marshallable(v) for v in sorted(value, key=str)]
    if isinstance(value, (list, tuple)):
        return [_marshallable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _marshallable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


#: what ``xmlrpc.client.dumps((text,), methodresponse=True, encoding="utf-8")`` puts
#: around a string result, as bytes
_STRING_RESPONSE = (b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
                    b"<value><string>",
                    b"</string></value>\n</param>\n</params>\n</methodResponse>\n")


def encode_result(result):
    """The methodResponse body (bytes) for a successful call."""
    if type(result) is str:  # pylint: disable=unidiomatic-typecheck
        # GetConfig's large documents: the bytes xmlrpc.client would produce, escaped
        # after encoding (& < > are single bytes that never occur inside a multi-byte
        # UTF-8 sequence, and bytes.replace is several times faster than str.replace)
        data = result.encode("utf-8")
        return b"".join((_STRING_RESPONSE[0],
                         data.replace(b"&", b"&amp;").replace(b"<", b"&lt;")
                         .replace(b">", b"&gt;"),
                         _STRING_RESPONSE[1]))
    return xmlrpc.client.dumps((_marshallable(result),), methodresponse=True,
                               allow_none=True, encoding="utf-8").encode("utf-8")


def encode_fault(fault):
    """The methodResponse body (bytes) for a Fault."""
    return xmlrpc.client.dumps(fault, methodresponse=True, allow_none=True,
                               encoding="utf-8").encode("utf-8")


def parse_basic_auth(header):
    """``(user, password)`` from an ``Authorization: Basic`` header value, split at the
    first colon (RFC 7617; upstream split at every colon, so passwords with one failed).

    Raises AuthenticationFailure (HTTP 401) when the header is missing, not Basic, not
    base64 or has no colon.
    """
    if not header:
        raise AuthenticationFailure("no credentials were sent")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise AuthenticationFailure("only HTTP Basic authentication is supported")
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationFailure("malformed Basic credentials") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if ":" not in text:
        raise AuthenticationFailure("Basic credentials without a colon")
    user, password = text.split(":", 1)
    return user, password


def authenticate(core, address, cert=None, user=None, password=None):
    """Authenticate a request before its body is read; return the client name the
    Metadata plugin established (or None). Raise AuthenticationFailure (HTTP 401), or
    RequestError(503) while the core is still starting.
    """
    if not core.ready.is_set():
        raise RequestError(503, "the server is starting; try again shortly")
    ok, client = core.authenticate_client(cert, user, password, address)
    if not ok:
        logger.warning("Authentication failed for %s (user %r, certificate %s)",
                       address[0], user, "yes" if cert else "no")
        raise AuthenticationFailure("authentication failed")
    return client


def check_acl(core, address, method, client=None):
    """Raise AuthenticationFailure (HTTP 401) unless ACLs allow ``method``."""
    if not core.check_acls(ClientAddress(address, client), method):
        logger.warning("Client %s is not allowed to call %s (ACL)", address[0], method)
        raise AuthenticationFailure("ACL check failed for %s" % method)


def resolve_method(core, method):
    """``(callable, takes_address)`` for a method name, or raise NoExposedMethod.

    A dotted name is plugin (or file monitor) RMI: called without the address. Any
    other name must be a Core method marked ``exposed``.
    """
    if "." in method:
        func = core._get_rmi().get(method)  # pylint: disable=protected-access
        if func is None:
            raise NoExposedMethod(method)
        return func, False
    return core._resolve_exposed_method(method), True  # pylint: disable=protected-access


#: inspect.signature of bound methods, by their function (the same for every instance)
_BOUND_SIGNATURES = weakref.WeakKeyDictionary()


def _signature(func):
    """``inspect.signature(func)``, remembered for bound methods (computing it costs
    more than the rest of a small call's dispatch).
    """
    if not isinstance(func, types.MethodType):
        return inspect.signature(func)
    try:
        return _BOUND_SIGNATURES[func.__func__]
    except (KeyError, TypeError):
        pass
    sig = inspect.signature(func)
    try:
        _BOUND_SIGNATURES[func.__func__] = sig
    except TypeError:  # not weak-referenceable
        pass
    return sig


def dispatch(core, method, params, address, client=None):
    """Run one call and return its result; every failure is a Fault.

    Built-in methods get ``ClientAddress(address, client)`` prepended; RMI gets only the
    params. The elapsed time is recorded under the method name.
    """
    start = time.perf_counter()
    try:
        try:
            func, takes_address = resolve_method(core, method)
        except NoExposedMethod:
            raise Fault(METHOD_NOT_FOUND, "Unknown method %s" % method) from None
        if takes_address:
            params = (ClientAddress(address, client),) + tuple(params)
        try:
            _signature(func).bind(*params)
        except TypeError as err:
            raise Fault(INVALID_PARAMS, "Bad arguments for %s: %s" % (method, err)) from None
        except ValueError:
            pass  # no signature to check (a builtin): let the call decide
        try:
            return func(*params)
        except Fault:
            raise
        except Exception as err:  # pylint: disable=broad-except
            raise _unexpected(method, err) from None
    finally:
        statistics.add_timing(method, time.perf_counter() - start)


def _unexpected(method, err):
    logger.error("Unexpected error in %s", method, exc_info=err)
    return Fault(getattr(err, "fault_code", GENERIC_FAULT),
                 "%s failed: %s" % (method, err) if str(err) else
                 "%s failed: %s" % (method, err.__class__.__name__))


def handle(core, body, address, cert=None, user=None, password=None, max_size=None):
    """The whole request path for a core that has the body in hand: authenticate,
    parse, check ACLs, dispatch. Returns the response body (a result or a Fault).

    Raises AuthenticationFailure and RequestError for the network core to map to 401
    and 400/413/503.
    """
    client = authenticate(core, address, cert=cert, user=user, password=password)
    method, params = parse_call(body, max_size or DEFAULT_MAX_REQUEST)
    return call(core, method, params, address, client)


def call(core, method, params, address, client=None):
    """ACL check, dispatch and encoding of a parsed, authenticated call."""
    check_acl(core, address, method, client)
    try:
        result = dispatch(core, method, params, address, client)
    except Fault as fault:
        return encode_fault(fault)
    return encode_result(result)


__all__ = ["parse_call", "parse_basic_auth", "encode_result", "encode_fault",
           "authenticate", "check_acl", "resolve_method", "dispatch", "call", "handle"]
