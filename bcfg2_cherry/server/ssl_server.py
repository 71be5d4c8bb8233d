"""The XML-RPC over HTTPS server of the builtin core, on the standard library
(socketserver, http.server, ssl).

One thread per connection; the TLS handshake happens in that thread with a timeout,
never in the accepting one, so an idle or half-open peer only ever holds its own
thread. Authentication runs in ``parse_request`` before the body is read; the call
itself goes through the shared ``bcfg2_cherry.server.dispatch`` path. Responses are
HTTP/1.0 and close the connection, as upstream's builtin server did.
"""
import logging
import selectors
import socket
import socketserver
import ssl
import threading
import time
import xmlrpc.server

from bcfg2_cherry.server import dispatch
from bcfg2_cherry.server.errors import (
    INTERNAL_ERROR, AuthenticationFailure, Fault, RequestError)
from bcfg2_cherry.server.tls import server_context

__all__ = ["SSLServer", "XMLRPCServer", "XMLRPCRequestHandler", "XMLRPCDispatcher",
           "XMLRPCACLCheckException"]

logger = logging.getLogger(__name__)

#: ``WWW-Authenticate`` sent with every 401 (the CherryPy core sends the same)
AUTH_CHALLENGE = 'Basic realm="Bcfg2", charset="UTF-8"'
#: after an early error, unread request bodies up to this size are drained so the
#: client reads our answer instead of a connection reset
DRAIN_LIMIT = 1024 * 1024
#: how long draining may take
DRAIN_TIME = 1.0


class XMLRPCACLCheckException(Exception):
    """Raised when ACL checks fail on an RPC request."""


class XMLRPCDispatcher:
    """Runs one XML-RPC call through the shared dispatch path.

    Built-in methods get the client address prepended, ``Plugin.method`` RMI does not
    (``dispatch.dispatch``). Only exposed Core methods and plugin RMI are reachable.
    """

    def __init__(self, allow_none=True, encoding=None):
        self.allow_none = allow_none
        self.encoding = encoding
        #: the Core that answers calls (``register_instance``)
        self.instance = None

    def register_instance(self, instance):
        """Set the Core whose exposed methods and RMI are served."""
        self.instance = instance

    def _marshaled_dispatch(self, address, data, client=None, max_size=None):
        """The response body (bytes) for the request body ``data``.

        Raises RequestError (400/413) for a malformed body and XMLRPCACLCheckException
        when an ACL denies the method; every failure of the call is a Fault response.
        """
        method, params = dispatch.parse_call(data, max_size or dispatch.DEFAULT_MAX_REQUEST)
        try:
            dispatch.check_acl(self.instance, address, method, client)
        except AuthenticationFailure:
            raise XMLRPCACLCheckException(method) from None
        try:
            result = dispatch.dispatch(self.instance, method, params, address, client)
            return dispatch.encode_result(result)
        except Fault as fault:
            return dispatch.encode_fault(fault)
        except Exception:  # pylint: disable=broad-except
            logger.error("Cannot encode the result of %s", method, exc_info=True)
            return dispatch.encode_fault(Fault(INTERNAL_ERROR, "Internal server error"))


class SSLServer(socketserver.TCPServer):
    """TCP server whose connections speak TLS.

    The TLS context comes from ``tls.server_context`` (TLS 1.2 at least; with ``ca``
    a client certificate is asked for and verified when sent, required only with
    ``reqCert``). Accepting never blocks on a peer: the handshake is left to
    ``handshake`` in the connection's own thread. ``timeout`` is the socket timeout of
    every connection (handshake, each read and write).
    """

    allow_reuse_address = True
    #: listen backlog (``[server] socket_queue_size``)
    request_queue_size = 128

    def __init__(self, listen_all, server_address, RequestHandlerClass,  # noqa: N803
                 keyfile=None, certfile=None, reqCert=False, ca=None,  # noqa: N803
                 timeout=None, protocol="xmlrpc/tlsv1", request_queue_size=None):
        host = server_address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        if listen_all:
            server_address = ("::" if ":" in host else "",) + tuple(server_address[1:])
        if request_queue_size:
            self.request_queue_size = int(request_queue_size)
        self.keyfile = keyfile
        self.certfile = certfile
        self.ca = ca
        self.reqCert = reqCert  # pylint: disable=invalid-name
        self.protocol = protocol
        self.timeout = timeout
        #: the server's ssl.SSLContext (None: plain TCP, only without key and certificate)
        self.context = None
        if keyfile or certfile:
            self.context = server_context(certfile, keyfile, ca, protocol)
            # (session tickets stay on although clients do not resume sessions: they are
            # what acknowledges a TLS 1.3 client's Finished at once; without them a
            # client without TCP_NODELAY waits a delayed ACK, 40 ms, to send its request)
            if reqCert and ca:
                self.context.verify_mode = ssl.CERT_REQUIRED
        socketserver.TCPServer.__init__(self, server_address, RequestHandlerClass)

    def server_activate(self):
        socketserver.TCPServer.server_activate(self)
        self.socket.setblocking(False)

    def get_request(self):
        """Accept a connection; no TLS yet (see ``handshake``)."""
        sock, address = self.socket.accept()
        sock.settimeout(self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock, address

    def handshake(self, sock, address):
        """The TLS socket for an accepted connection, or None when the handshake
        failed or timed out (the socket is then closed)."""
        if self.context is None:
            return sock
        try:
            return self.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as err:
            logger.info("TLS handshake with %s failed: %s", address[0], err)
            sock.close()
            return None

    def close_request(self, request):
        try:
            request.close()
        except OSError:
            pass

    def shutdown_request(self, request):
        self.close_request(request)

    @property
    def url(self):
        """``https://host:port`` of the listening socket."""
        host, port = self.socket.getsockname()[:2]
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d" % ("https" if self.context else "http", host, port)


class XMLRPCRequestHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    """XML-RPC request handler with HTTP Basic authentication and client certificates.

    ``parse_request`` refuses anything but POST (405) and authenticates (401) before
    the body is read; ``do_POST`` checks ``Content-Length`` against the size limit
    (411/400/413) before reading it, then dispatches. Any path is accepted.
    """

    protocol_version = "HTTP/1.0"
    disable_nagle_algorithm = True
    #: accept every path (the upstream client posts to /RPC2, others to /)
    rpc_paths = ()

    def setup(self):
        self._extra_headers = []
        self._body_read = False
        #: the client name authentication established (or None)
        self.auth_client = None
        xmlrpc.server.SimpleXMLRPCRequestHandler.setup(self)

    # ---------------------------------------------------------------- authentication

    def parse_request(self):
        """Parse the request line and headers, then refuse non-POST requests and
        authenticate (HTTP Basic plus the verified client certificate)."""
        if not xmlrpc.server.SimpleXMLRPCRequestHandler.parse_request(self):
            return False
        core = self.server.instance
        try:
            if self.command != "POST":
                raise RequestError(405, "XML-RPC calls are POST requests")
            if not core.ready.is_set():
                raise RequestError(503, "the server is starting; try again shortly")
            user, password = dispatch.parse_basic_auth(self.headers.get("Authorization"))
            self.auth_client = dispatch.authenticate(
                core, self.client_address, cert=self.peer_certificate(), user=user,
                password=password)
        except AuthenticationFailure as err:
            logger.info("401 for %s: %s", self.client_address[0], err)
            self.send_failure(401)
            return False
        except RequestError as err:
            self.send_failure(err.status, err.message)
            return False
        except Exception:  # pylint: disable=broad-except
            logger.error("Unexpected authentication failure for %s",
                         self.client_address[0], exc_info=True)
            self.send_failure(401)
            return False
        return True

    def peer_certificate(self):
        """The verified client certificate (``getpeercert()`` form), or None."""
        getpeercert = getattr(self.request, "getpeercert", None)
        if getpeercert is None:
            return None
        try:
            return getpeercert() or None
        except (ValueError, ssl.SSLError):
            return None

    # ---------------------------------------------------------------- the call

    def do_POST(self):  # pylint: disable=invalid-name
        """Read the body (within the size limit) and answer the call."""
        try:
            body = self._read_body()
            response = self.server._marshaled_dispatch(  # pylint: disable=protected-access
                self.client_address, body, self.auth_client, self.server.max_request_size)
        except XMLRPCACLCheckException:
            self.send_failure(401)
            return
        except RequestError as err:
            self.send_failure(err.status, err.message)
            return
        except (socket.timeout, ConnectionError, ssl.SSLError) as err:
            logger.info("Lost the request from %s: %s", self.client_address[0], err)
            self.close_connection = True
            return
        except Exception:  # pylint: disable=broad-except
            logger.error("Unexpected dispatch error for %s", self.client_address[0],
                         exc_info=True)
            response = dispatch.encode_fault(Fault(INTERNAL_ERROR, "Internal server error"))
        self.send_xml(response)

    def _read_body(self):
        limit = self.server.max_request_size
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "chunked request bodies are not supported; send "
                               "Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "Content-Length is required")
        try:
            length = int(length)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            raise RequestError(400, "invalid Content-Length %r" % length) from None
        if length > limit:
            raise RequestError(413, "request body of %d bytes is over the limit of %d"
                               % (length, limit))
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) != length:
            raise RequestError(400, "request body ended after %d of %d bytes"
                               % (len(body), length))
        return body

    # ---------------------------------------------------------------- responses

    def send_xml(self, body):
        """Send a 200 text/xml response: headers and body in one write."""
        try:
            self.send_response(200)
            self.send_header("Content-type", "text/xml")
            self.send_header("Content-length", str(len(body)))
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(body)
            self.flush_headers()
        except (socket.timeout, ConnectionError, ssl.SSLError) as err:
            logger.info("Cannot send the response to %s: %s", self.client_address[0], err)
            self.close_connection = True

    def send_failure(self, status, message=None):
        """An HTTP error response (with WWW-Authenticate, Allow or Retry-After where it
        belongs); an unread request body is drained so the client sees the answer."""
        if status == 401:
            self._extra_headers.append(("WWW-Authenticate", AUTH_CHALLENGE))
        elif status == 405:
            self._extra_headers.append(("Allow", "POST"))
        elif status == 503:
            self._extra_headers.append(("Retry-After", "5"))
        try:
            self.send_error(status, message)
        except (socket.timeout, ConnectionError, ssl.SSLError) as err:
            logger.info("Cannot send %d to %s: %s", status, self.client_address[0], err)
        self.close_connection = True
        if status != 413:
            self._drain()

    def end_headers(self):
        for name, value in self._extra_headers:
            self.send_header(name, value)
        self._extra_headers = []
        xmlrpc.server.SimpleXMLRPCRequestHandler.end_headers(self)

    def _drain(self):
        """Read and drop a small unread body, so closing does not reset the
        connection before the client has read the response."""
        if self._body_read or not hasattr(self, "headers") or self.headers is None:
            return
        try:
            remaining = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if remaining <= 0 or remaining > DRAIN_LIMIT:
            return
        deadline = time.monotonic() + DRAIN_TIME
        try:
            self.connection.settimeout(DRAIN_TIME)
            while remaining > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except (OSError, ValueError):
            pass
        self._body_read = True

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.address_string(), format % args)

    def log_error(self, format, *args):  # pylint: disable=redefined-builtin
        logger.info("%s %s", self.address_string(), format % args)


class XMLRPCServer(socketserver.ThreadingMixIn, SSLServer, XMLRPCDispatcher):
    """The builtin core's threading XML-RPC server.

    ``serve_forever`` accepts connections until ``shutdown`` (safe from a signal
    handler) and hands each to a new thread, which does the TLS handshake and then
    answers one request.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, listen_all, server_address, RequestHandlerClass=None,  # noqa: N803
                 keyfile=None, certfile=None, ca=None, protocol="xmlrpc/tlsv1",
                 timeout=10, logRequests=False, register=True,  # noqa: N803
                 allow_none=True, encoding=None, request_queue_size=None,
                 max_request_size=None):
        XMLRPCDispatcher.__init__(self, allow_none, encoding)
        if RequestHandlerClass is None:
            class RequestHandlerClass(XMLRPCRequestHandler):  # noqa: N801
                """A subclass per server, so class attributes are never shared."""
        #: largest request body accepted (bytes); larger ones get 413
        self.max_request_size = max_request_size or dispatch.DEFAULT_MAX_REQUEST
        self.logRequests = logRequests  # pylint: disable=invalid-name
        self.register = register
        #: True while ``serve_forever`` runs
        self.serve = False
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._loop_thread = None
        self._wakeup = socket.socketpair()
        for sock in self._wakeup:
            sock.setblocking(False)
        SSLServer.__init__(self, listen_all, server_address, RequestHandlerClass,
                           keyfile=keyfile, certfile=certfile, ca=ca, timeout=timeout,
                           protocol=protocol, request_queue_size=request_queue_size)
        logger.info("Service available at %s", self.url)

    def serve_forever(self, poll_interval=0.5):
        """Serve until ``shutdown`` is called."""
        self.serve = True
        self._loop_done.clear()
        self._loop_thread = threading.current_thread()
        try:
            logger.info("Serving at %s", self.url)
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wakeup[0], selectors.EVENT_READ)
                while self.serve:
                    for key, _ in selector.select(poll_interval):
                        if key.fileobj is self.socket and self.serve:
                            self._accept_ready()
                        elif key.fileobj is self._wakeup[0]:
                            try:
                                self._wakeup[0].recv(512)
                            except OSError:
                                pass
                    self.service_actions()
            logger.info("Stopped serving at %s", self.url)
        finally:
            self.serve = False
            self._loop_done.set()

    def _accept_ready(self, most=64):
        """Accept every waiting connection (up to ``most``) and start its thread."""
        for _ in range(most):
            try:
                request, address = self.get_request()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                logger.warning("accept() failed: %s", err)
                return
            try:
                self.process_request(request, address)
            except Exception:  # pylint: disable=broad-except
                logger.error("Cannot start a thread for %s", address[0], exc_info=True)
                self.shutdown_request(request)

    def process_request_thread(self, request, client_address):
        """Handshake and answer one connection (runs in its own thread)."""
        conn = self.handshake(request, client_address)
        if conn is None:
            return
        try:
            self.finish_request(conn, client_address)
        except Exception:  # pylint: disable=broad-except
            self.handle_error(conn, client_address)
        finally:
            self.shutdown_request(conn)

    def handle_error(self, request, client_address):
        logger.error("Error handling the request from %s", client_address[0],
                     exc_info=True)

    def ping(self, *args):
        """Echo response (upstream registered it as an XML-RPC function; here the
        callable surface is the Core's exposed methods and plugin RMI only)."""
        logger.info("ping(%s)", ", ".join(repr(arg) for arg in args))
        return args

    def shutdown(self):
        """Make ``serve_forever`` return soon; safe from a signal handler."""
        self.serve = False
        try:
            self._wakeup[1].send(b"x")
        except OSError:
            pass

    def server_close(self):
        """Close the listening socket (after ``serve_forever`` has returned)."""
        if self._loop_thread is not threading.current_thread():
            self.shutdown()
            self._loop_done.wait(2)
        SSLServer.server_close(self)
        for sock in self._wakeup:
            try:
                sock.close()
            except OSError:
                pass
        logger.info("Server closed")
