"""The CherryPy-powered network core.

The core is the root controller of a CherryPy application: every path goes to its
``default`` handler. Two tools in the application's own ``bcfg2`` toolbox do the HTTP
work: ``bcfg2.authn`` (``do_authn``, at ``on_start_resource``) reads the credentials,
the TLS or proxy-forwarded client certificate and the body, authenticates, parses the
call and checks ACLs, then leaves the parsed call on ``cherrypy.request.bcfg2_call``;
``bcfg2.xmlrpc_error`` (``on_error``) turns whatever went wrong into an XML-RPC fault or
the right HTTP status. The call itself goes through the shared ``dispatch`` module.

Three ways to run it: standalone (``run()``, i.e. ``bcfg2-cherry serve``), mounted into
an existing CherryPy application (``mount``), or as a WSGI callable (``wsgi_app``).
"""
import collections
import functools
import html
import logging
import os
import select
import selectors
import socket
import ssl
import sys
import threading
import time

import cherrypy
from cherrypy._cptools import ErrorTool, Tool, Toolbox
from cherrypy._cpwsgi_server import CPWSGIServer
from cherrypy.process import wspbus
from cherrypy.process.plugins import Daemonizer, DropPrivileges, PIDFile
from cheroot.errors import MaxSizeExceeded
from cheroot.ssl.builtin import BuiltinSSLAdapter

from bcfg2_cherry.options import OptionError, Settings
from bcfg2_cherry.server import dispatch
from bcfg2_cherry.server.core import NetworkCore
from bcfg2_cherry.server.errors import (
    INTERNAL_ERROR, AuthenticationFailure, CoreInitError, Fault, RequestError)
from bcfg2_cherry.server.proxy import ProxyPolicy
from bcfg2_cherry.server.tls import (
    DeferredHandshakeAdapter, peercert_from_environ, server_context)

__all__ = ["CherrypyCore", "on_error", "mount", "wsgi_app", "HTTPServer",
           "RPCDispatcher"]

logger = logging.getLogger(__name__)

#: ``WWW-Authenticate`` sent with every 401
AUTH_CHALLENGE = 'Basic realm="Bcfg2", charset="UTF-8"'

#: What the auth tool leaves on ``cherrypy.request.bcfg2_call`` for ``default``.
RPCCall = collections.namedtuple("RPCCall", "method params address client")


def _error_page(status, message, traceback, version):
    """A short HTML body for HTTP errors: the status and message, never a traceback."""
    return ("<html><head><title>%s</title></head><body><h1>%s</h1><p>%s</p></body>"
            "</html>\n" % (html.escape(status), html.escape(status),
                           html.escape(message or "")))


def http_error(err):
    """The cherrypy.HTTPError for an AuthenticationFailure (401, with
    ``WWW-Authenticate``) or a RequestError (its status; 405 with ``Allow``, 503 with
    ``Retry-After``); the extra headers are set on the response already.
    """
    response = cherrypy.serving.response
    remote = cherrypy.serving.request.remote.ip
    if isinstance(err, AuthenticationFailure):
        logger.info("401 for %s: %s", remote, err)
        response.headers["WWW-Authenticate"] = AUTH_CHALLENGE
        return cherrypy.HTTPError(401, "Authentication failed")
    logger.info("%d for %s: %s", err.status, remote, err.message)
    if err.status == 405:
        response.headers["Allow"] = "POST"
    elif err.status == 503:
        response.headers["Retry-After"] = "5"
    return cherrypy.HTTPError(err.status, err.message)


def on_error(*args, **kwargs):  # pylint: disable=unused-argument
    """The application's error response (CherryPy ``request.error_response``).

    An xmlrpc Fault becomes a fault response carrying its code; AuthenticationFailure
    and RequestError their HTTP status (see ``http_error``); anything else a generic
    fault, with the traceback logged but never sent.
    """
    err = sys.exc_info()[1]
    if isinstance(err, (AuthenticationFailure, RequestError)):
        http_error(err).set_response()
        return
    if isinstance(err, Fault):
        fault = err
    else:
        logger.error("Unexpected error serving %s", cherrypy.serving.request.path_info,
                     exc_info=True)
        fault = Fault(INTERNAL_ERROR, "Internal server error")
    body = dispatch.encode_fault(fault)
    response = cherrypy.serving.response
    response.status = 200
    response.headers["Content-Type"] = "text/xml"
    response.headers.pop("Content-Length", None)
    response.body = body


class RPCDispatcher(cherrypy.dispatch.Dispatcher):
    """Send every path (``/``, ``/RPC2``, anything) to the root's ``default`` handler.

    The Core's exposed methods carry the same ``exposed`` mark CherryPy looks for, so
    the default dispatcher would let ``GET /GetConfig`` call them directly.
    """

    def find_handler(self, path):
        return cherrypy.dispatch.Dispatcher.find_handler(self, "/default")


class HTTPServer(CPWSGIServer):
    """CherryPy's cheroot server, hardened against connections that do not speak.

    A new connection waits in cheroot's selector until it sends something, its TLS
    handshake (``DeferredHandshakeAdapter``) is advanced there without blocking, and it
    waits again until its request starts to arrive: only then does it reach a worker
    thread. Idle or half-open connections never hold a worker, and are closed
    ``socket_timeout`` seconds after they were accepted (a peer that sends part of its
    request and stalls still holds one, for ``socket_timeout``). Select it with
    ``server.instance`` (a dotted name).
    """

    def __init__(self, server_adapter=cherrypy.server):
        CPWSGIServer.__init__(self, server_adapter)
        if type(self.ssl_adapter) is BuiltinSSLAdapter:  # pylint: disable=unidiomatic-typecheck
            adapter = DeferredHandshakeAdapter(
                server_adapter.ssl_certificate, server_adapter.ssl_private_key,
                server_adapter.ssl_certificate_chain, server_adapter.ssl_ciphers)
            adapter.context = self.ssl_adapter.context
            self.ssl_adapter = adapter

    def process_conn(self, conn):
        """Hand ``conn`` to a worker once its handshake is done and its request has
        started to arrive; until then it waits in the selector.
        """
        state = getattr(conn, "bcfg2_state", None)
        if state is None:  # just accepted
            conn.bcfg2_accepted = time.time()
            conn.bcfg2_state = "handshake" if getattr(
                conn.socket, "bcfg2_handshake_pending", False) else "waiting"
        for _ in range(8):  # each pass consumes data or waits; never spin
            if conn.bcfg2_state == "serving":
                CPWSGIServer.process_conn(self, conn)
                return
            if conn.bcfg2_state == "waiting":
                sock = conn.socket
                if (isinstance(sock, ssl.SSLSocket) and sock.pending()) or \
                        _readable_now(sock):
                    conn.bcfg2_state = "serving"
                    continue
                break
            try:
                want = self.ssl_adapter.handshake_step(conn.socket, conn.ssl_env)
            except (ssl.SSLError, OSError) as err:
                # a peer that just connects and closes (port probes) is not news
                quiet = isinstance(err, (ssl.SSLEOFError, ssl.SSLZeroReturnError,
                                         ConnectionError))
                logger.log(logging.DEBUG if quiet else logging.INFO,
                           "TLS handshake with %s failed: %s",
                           getattr(conn, "remote_addr", "?"), err)
                conn.close()
                return
            if want == "write":
                self._wait_for(conn, selectors.EVENT_WRITE)
                return
            if want is None:
                conn.bcfg2_state = "waiting"
            elif not _readable_now(conn.socket):
                break
        self._wait_for(conn, selectors.EVENT_READ)

    def _wait_for(self, conn, events):
        # cheroot's selector thread calls process_conn again when the socket is ready,
        # and closes the connection once last_used is socket_timeout in the past.
        conn.last_used = conn.bcfg2_accepted
        try:
            self._connections._selector.register(  # pylint: disable=protected-access
                conn.socket.fileno(), events, data=conn)
        except (OSError, ValueError, KeyError) as err:
            logger.debug("Dropping connection from %s: %s",
                         getattr(conn, "remote_addr", "?"), err)
            conn.close()


def _access_if_enabled(log, access):
    """The application's ``log.access`` (CherryPy calls it after every request),
    skipped when its INFO line would be dropped anyway: CherryPy builds the whole line,
    a fresh request id included, before the logger looks at the level.
    """
    if log.access_log.isEnabledFor(logging.INFO):
        access()


def _readable_now(sock):
    """True if the kernel has data (or EOF) for ``sock`` right now."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class _StartupReport:
    """Makes the foreground process of ``-D`` exit with the daemon's start-up status.

    CherryPy's Daemonizer exits the original process with 0 at the first fork, however
    the daemon then fares. A fork hook in that process waits instead until the daemon
    says it is serving (exit 0) or the daemon is gone (exit 1).
    """

    def __init__(self):
        self.origin = os.getpid()
        self.rfd, self.wfd = os.pipe()
        os.register_at_fork(after_in_parent=self._after_fork_in_parent)

    def _after_fork_in_parent(self):
        if os.getpid() != self.origin or self.wfd is None:
            return
        os.close(self.wfd)
        self.wfd = None
        try:
            data = os.read(self.rfd, 1)
        except OSError:
            data = b""
        os._exit(0 if data == b"0" else 1)  # pylint: disable=protected-access

    def report(self, ok):
        """Tell the waiting foreground process how start-up went (daemon side)."""
        if self.wfd is None or os.getpid() == self.origin:
            return
        try:
            os.write(self.wfd, b"0" if ok else b"1")
        finally:
            os.close(self.wfd)
            self.wfd = None


class CherrypyCore(NetworkCore):
    """The CherryPy-based server core."""

    name = "CherrypyCore"

    #: extra CherryPy config files (global config), applied after ours (``serve``)
    cherrypy_config_files = ()
    #: CherryPy environment (``production``, ...), applied before ours
    environment = None

    def __init__(self, setup):
        NetworkCore.__init__(self, setup)
        #: the trusted-proxy policy (``[server] trusted_proxies``)
        self.proxy = ProxyPolicy.from_settings(setup)
        #: the cherrypy.Application serving this core (set by ``make_app``)
        self.app = None
        self._engine = None
        self._owns_engine = False
        self._started = False
        self._start_lock = threading.Lock()
        self._startup_report = None

    @property
    def rmi(self):
        """``{"Plugin.method": function}``: the plugin RMI clients can call (computed
        from the loaded plugins, so it is never stale).
        """
        return self._get_rmi()

    # ------------------------------------------------------------------ the application

    def app_config(self):
        """The application config: our tools on, everything else that could change
        what a client sees off.
        """
        return {"/": {
            "request.dispatch": RPCDispatcher(),
            "bcfg2.authn.on": True,
            "bcfg2.xmlrpc_error.on": True,
            "tools.proxy.on": False,
            "tools.encode.on": False,
            "tools.gzip.on": False,
            "tools.sessions.on": False,
            "tools.trailing_slash.on": False,
            # on_error logs what is unexpected; 401s and 400s need no traceback
            "tools.log_tracebacks.on": False,
            "tools.log_headers.on": False,
            "request.show_tracebacks": False,
            "request.show_mismatched_params": False,
            "request.body.maxbytes": self.setup.max_request_size,
            "error_page.default": _error_page,
        }}

    def make_app(self, script_name=""):
        """A cherrypy.Application with this core as its root and its own ``bcfg2``
        toolbox, so our tools exist only inside it.
        """
        script_name = (script_name or "").rstrip("/")
        toolbox = Toolbox("bcfg2")
        toolbox.authn = Tool("on_start_resource", self.do_authn)
        toolbox.xmlrpc_error = ErrorTool(on_error)
        app = cherrypy.Application(self, script_name)
        app.toolboxes = dict(app.toolboxes, bcfg2=toolbox)
        app.merge(self.app_config())
        level = logging.DEBUG if self.setup.debug else logging.WARNING
        app.log.access_log.setLevel(level)
        app.log.access = functools.partial(_access_if_enabled, app.log,
                                           app.log.access)
        self.app = app
        return app

    def do_authn(self):
        """Authenticate the request and parse its call (the ``bcfg2.authn`` tool).

        405 unless POST, 503 until the core is ready, 401 for missing or bad
        credentials or a failed ACL, 413 for a body over ``[server]
        max_request_size`` (checked before reading), 400 for a body that is not an
        XML-RPC call. The body is read here, once; ``default`` gets the parsed call.
        """
        request = cherrypy.serving.request
        request.bcfg2_call = None
        try:
            request.bcfg2_call = self._authenticated_call(request)
        except (AuthenticationFailure, RequestError) as err:
            # an HTTPError, so that CherryPy answers without logging a traceback
            raise http_error(err) from None

    def _authenticated_call(self, request):
        if request.method != "POST":
            raise RequestError(405, "XML-RPC calls are POST requests")
        if not self.ready.is_set():
            raise RequestError(503, "the server is starting; try again shortly")
        user, password = dispatch.parse_basic_auth(request.headers.get("Authorization"))
        tls_cert = peercert_from_environ(getattr(request, "wsgi_environ", None) or {})
        address, cert = self.proxy.resolve((request.remote.ip, request.remote.port),
                                           request.headers, tls_cert)
        client = dispatch.authenticate(self, address, cert=cert, user=user,
                                       password=password)
        body = self._read_body(request)
        method, params = dispatch.parse_call(body, self.setup.max_request_size)
        dispatch.check_acl(self, address, method, client)
        return RPCCall(method, params, address, client)

    def _read_body(self, request):
        """The request body, read once; 413 over the limit, before reading it."""
        limit = self.setup.max_request_size
        length = request.headers.get("Content-Length")
        request.process_request_body = False
        if length is not None:
            try:
                length = int(length)
            except ValueError:
                raise RequestError(400, "invalid Content-Length %r" % length) from None
            if length > limit:
                raise RequestError(413, "request body of %d bytes is over the limit of "
                                   "%d" % (length, limit))
            # never read past Content-Length: a WSGI server's input may be the socket
            return request.rfile.read(length) if length > 0 else b""
        if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
            return b""
        chunks, size = [], 0
        while True:
            try:
                data = request.rfile.read(min(65536, limit + 1 - size))
            except (MaxSizeExceeded, OSError) as err:
                # cheroot enforces server.max_request_body_size on chunked bodies too
                if isinstance(err, MaxSizeExceeded) or "Too Large" in str(err):
                    raise RequestError(413, "request body is over the limit of %d "
                                       "bytes" % limit) from None
                raise RequestError(400, "cannot read the request body: %s" % err) \
                    from None
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            size += len(data)
            if size > limit:
                raise RequestError(413, "request body is over the limit of %d bytes"
                                   % limit)

    @cherrypy.expose
    def default(self, *args, **params):  # pylint: disable=unused-argument
        """Handle every XML-RPC call: dispatch the call the auth tool parsed (built-in
        methods get the client address prepended, ``Plugin.method`` RMI does not) and
        return the encoded response or fault.
        """
        call = getattr(cherrypy.serving.request, "bcfg2_call", None)
        if call is None:
            raise AuthenticationFailure("the request was not authenticated")
        try:
            result = dispatch.dispatch(self, call.method, call.params, call.address,
                                       call.client)
            body = dispatch.encode_result(result)
        except Fault as fault:
            body = dispatch.encode_fault(fault)
        cherrypy.serving.response.headers["Content-Type"] = "text/xml"
        return body

    # ------------------------------------------------------------------ the engine

    def attach(self, engine=None, start_with_engine=True):
        """Tie this core to a CherryPy engine: ``stop`` shuts the core down,
        ``graceful`` (SIGHUP) re-reads bcfg2.conf and, when ``start_with_engine``,
        ``start`` loads the plugins and starts the file monitor.
        """
        engine = engine or cherrypy.engine
        self._engine = engine
        if start_with_engine:
            engine.subscribe("start", self._start_with_engine, priority=80)
        engine.subscribe("stop", self.shutdown)
        engine.subscribe("graceful", self.reload_config)

    def detach(self):
        """Undo ``attach``."""
        if self._engine is None:
            return
        for channel, func in (("start", self._start_with_engine),
                              ("stop", self.shutdown), ("graceful", self.reload_config)):
            self._engine.unsubscribe(channel, func)
        self._engine = None

    def _start_with_engine(self):
        if self.shut_down:
            logger.error("The Bcfg2 core at %s was shut down; mount a new one",
                         self.app.script_name if self.app else "?")
            return
        try:
            self._start()
        except Exception:  # pylint: disable=broad-except
            # never take the host application down: the Bcfg2 path answers 503
            logger.critical("The Bcfg2 core failed to start", exc_info=True)

    def _start(self):
        with self._start_lock:
            if self._started:
                return
            self._started = True
        NetworkCore._start(self)
        logger.info("Bcfg2 core ready with plugins %s", ", ".join(sorted(self.plugins)))

    def shutdown(self):
        """Shut the core down once; stop the engine too if ``run`` started it."""
        NetworkCore.shutdown(self)
        engine = self._engine
        if self._owns_engine and engine is not None and \
                engine.state in (wspbus.states.STARTED, wspbus.states.STARTING):
            engine.exit()

    # ------------------------------------------------------------------ standalone

    def server_config(self):
        """CherryPy global config for listening where ``[components] bcfg2`` says."""
        scheme, host, port = self.setup.url
        if scheme not in ("http", "https"):
            raise CoreInitError("[components] bcfg2 = %s: the scheme must be https (or "
                                "http behind a TLS-terminating proxy)"
                                % self.setup.server_url)
        if self.setup.listen_all:
            host = "::" if ":" in host else "0.0.0.0"
        config = {
            "engine.autoreload.on": False,
            "checker.on": False,
            "log.screen": False,
            "server.instance": "%s.HTTPServer" % __name__,
            "server.socket_host": host,
            "server.socket_port": port,
            "server.thread_pool": self.setup.thread_pool,
            "server.socket_queue_size": self.setup.socket_queue_size,
            "server.socket_timeout": self.setup.socket_timeout,
            "server.max_request_body_size": self.setup.max_request_size,
            "server.shutdown_timeout": 1,
            "server.ssl_module": None,
            "server.ssl_certificate": None,
            "server.ssl_private_key": None,
            "server.ssl_context": None,
        }
        if scheme == "https":
            config.update({
                "server.ssl_module": "builtin",
                "server.ssl_certificate": self.setup.certificate,
                "server.ssl_private_key": self.setup.key,
                "server.ssl_context": server_context(
                    self.setup.certificate, self.setup.key, self.setup.ca,
                    self.setup.protocol),
            })
        else:
            logger.warning("Serving plain HTTP on %s:%s: only for a TLS-terminating "
                           "reverse proxy ([server] trusted_proxies = %s)", host, port,
                           ", ".join(str(n) for n in self.proxy.trusted) or "none")
        return config

    def _run(self):
        """Start the server listening."""
        try:
            config = self.server_config()
        except (CoreInitError, OptionError) as err:
            logger.error("Cannot start the server: %s", err)
            return False
        if self.environment:
            cherrypy.config.update({"environment": self.environment})
        cherrypy.config.update(config)
        for path in self.cherrypy_config_files:
            cherrypy.config.update(path)
        err = _check_listen(cherrypy.server.socket_host, cherrypy.server.socket_port)
        if err:
            logger.error("Cannot listen on %s port %s: %s", cherrypy.server.socket_host,
                         cherrypy.server.socket_port, err)
            return False
        level = logging.DEBUG if self.setup.debug else (
            logging.INFO if self.setup.verbose else logging.WARNING)
        logging.getLogger("cherrypy.error").setLevel(level)
        cherrypy.tree.mount(self.make_app(""))
        self.attach(cherrypy.engine, start_with_engine=False)
        self._owns_engine = True
        engine = cherrypy.engine
        if threading.current_thread() is threading.main_thread():
            handler = getattr(engine, "signal_handler", None)
            if handler is not None:
                handler.handlers["SIGHUP"] = engine.graceful
                handler.subscribe()
        engine.start()
        logger.info("Listening on %s://%s:%s", self.setup.url[0],
                    cherrypy.server.socket_host, cherrypy.server.bound_addr[1])
        return True

    def _block(self):
        """Serve until the engine exits; ``shutdown`` runs on the engine's ``stop``."""
        if self._startup_report is not None:
            self._startup_report.report(True)
        cherrypy.engine.block()

    def _daemonize(self):
        """Drop privileges, daemonize with CherryPy's Daemonizer and write the pid
        file with PIDFile (removed again when the engine exits).
        """
        self._drop_privileges()
        self._startup_report = _StartupReport()
        Daemonizer(cherrypy.engine).subscribe()
        PIDFile(cherrypy.engine, os.path.abspath(self.setup.daemon)).subscribe()
        return True

    def _drop_privileges(self):
        """Switch to ``[server] user``/``group`` and ``umask`` with CherryPy's
        DropPrivileges, once the server listens (so a port below 1024 works).
        """
        uid, gid = self._run_as_ids()
        if os.getuid() != 0:
            uid = gid = None
        DropPrivileges(cherrypy.engine, uid=uid, gid=gid,
                       umask=self.setup.umask).subscribe()
        try:
            import pwd
            os.environ["HOME"] = pwd.getpwuid(uid if uid is not None
                                              else os.getuid()).pw_dir
        except KeyError:
            pass


def _check_listen(host, port):
    """None if ``(host, port)`` can be bound now, else the error (a string)."""
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC,
                                   socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as err:
        return str(err)
    error = "no address"
    for family, stype, proto, _, addr in infos:
        try:
            with socket.socket(family, stype, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
            return None
        except OSError as err:
            error = str(err)
    return error


# ---------------------------------------------------------------------- embedding

def mount(config=None, script_name="/bcfg2", core_class=CherrypyCore, **overrides):
    """Mount a Bcfg2 server into the running process's CherryPy tree and return its
    cherrypy.Application.

    ``config`` is the bcfg2.conf path; ``overrides`` are Settings attributes
    (``repository=...``, ``plugins=[...]``, ...). The core loads its plugins and starts
    its file monitor when ``cherrypy.engine`` starts and shuts down when it stops; until
    then requests get 503. The host application's server does the listening (use
    ``server.instance = "bcfg2_cherry.server.cherrypy_core.HTTPServer"`` there for the
    idle-connection hardening, and a builtin SSL context with ``verify_mode`` set for
    client certificates). The core is ``app.root``.
    """
    try:
        setup = Settings(config, overrides)
    except OptionError as err:
        raise CoreInitError(str(err)) from None
    core = core_class(setup)
    app = core.make_app(script_name)
    cherrypy.tree.mount(app, app.script_name)
    core.attach(cherrypy.engine)
    if cherrypy.engine.state == wspbus.states.STARTED:
        core._start_with_engine()  # pylint: disable=protected-access
    return app


def wsgi_app(config=None, script_name="", **overrides):
    """A WSGI callable serving Bcfg2 for any WSGI server (gunicorn, mod_wsgi, ...).

    Mounts the core as ``mount`` does, keeps CherryPy's own HTTP server from starting
    and starts the engine, which loads the plugins and starts the file monitor thread:
    call it in each worker process (no pre-fork loading, e.g. no gunicorn
    ``--preload``). The WSGI server must terminate TLS or sit behind a proxy listed
    in ``[server] trusted_proxies``.
    """
    app = mount(config, script_name, **overrides)
    cherrypy.server.unsubscribe()
    cherrypy.config.update({"engine.autoreload.on": False})
    if cherrypy.engine.state != wspbus.states.STARTED:
        cherrypy.engine.start()
    return app
