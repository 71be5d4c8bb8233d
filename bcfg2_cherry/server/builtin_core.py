"""The builtin network core: the standard library's socket and HTTP servers
(``bcfg2_cherry.server.ssl_server``), python-daemon for ``-D``.
"""
import errno
import logging
import os
import signal
import socket
import threading

import daemon
from daemon.pidfile import TimeoutPIDLockFile

from bcfg2_cherry.options import OptionError
from bcfg2_cherry.server.core import NetworkCore
from bcfg2_cherry.server.errors import CoreInitError
from bcfg2_cherry.server.ssl_server import XMLRPCServer

__all__ = ["BuiltinCore"]

logger = logging.getLogger(__name__)


def _log_file_handles():
    """File descriptors of every logging handler (kept open when daemonizing)."""
    handlers = list(logging.getLogger().handlers)
    for obj in list(logging.Logger.manager.loggerDict.values()):
        handlers.extend(getattr(obj, "handlers", ()))
    fds = set()
    for handler in handlers:
        for attr in ("stream", "socket"):
            stream = getattr(handler, attr, None)
            try:
                fds.add(stream.fileno())
            except (AttributeError, ValueError, OSError):
                pass
    return sorted(fds)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _StartupReport:
    """Lets the process that ran ``serve -D`` exit with the daemon's start-up status:
    0 once the daemon serves, 1 if it fails or dies first (python-daemon's detaching
    parent would exit 0 whatever happens next).
    """

    def __init__(self):
        self.rfd, self.wfd = os.pipe()

    def fork(self):
        """Fork; the original process waits for the report and exits with it."""
        pid = os.fork()
        if pid:
            os.close(self.wfd)
            try:
                data = os.read(self.rfd, 1)
            except OSError:
                data = b""
            os._exit(0 if data == b"0" else 1)  # pylint: disable=protected-access
        os.close(self.rfd)

    def report(self, ok):
        """Tell the waiting process how start-up went (once)."""
        if self.wfd is None:
            return
        try:
            os.write(self.wfd, b"0" if ok else b"1")
        except OSError:
            pass
        finally:
            os.close(self.wfd)
            self.wfd = None


class BuiltinCore(NetworkCore):
    """The built-in server core."""

    name = "BuiltinCore"
    #: how often the accept loop looks at the stop flag (``shutdown`` wakes it at once)
    poll_interval = 0.5

    def __init__(self, setup):
        NetworkCore.__init__(self, setup)
        #: The XMLRPCServer instance powering this server core
        self.server = None
        #: The daemon.DaemonContext used to drop privileges, write the PID file and
        #: daemonize this core (``-D``)
        self.context = self._make_context()
        self._stop_requested = False
        self._startup = None

    def _make_context(self):
        args = dict(umask=self.setup.umask, detach_process=True,
                    working_directory="/", files_preserve=_log_file_handles(),
                    signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None,
                                signal.SIGTTOU: None, signal.SIGTERM: self._signal_stop,
                                signal.SIGINT: self._signal_stop})
        if os.getuid() == 0:
            try:
                args["uid"], args["gid"] = self._run_as_ids()
            except (KeyError, ValueError) as err:
                raise CoreInitError("[server] user = %s, group = %s: %s" % (
                    self.setup.user, self.setup.group, err)) from None
        if self.setup.daemon:
            args["pidfile"] = TimeoutPIDLockFile(self.setup.daemon, acquire_timeout=5)
        return daemon.DaemonContext(**args)

    # ------------------------------------------------------------------ daemon

    def _check_pidfile(self, pidfile):
        """Break a stale pid lock; False (logged) if a live process holds it."""
        if not pidfile.is_locked():
            return True
        pid = pidfile.read_pid()
        if pid and pid != os.getpid() and _pid_alive(pid):
            self.logger.error("Failed to daemonize: %s is locked by running process %s",
                              pidfile.path, pid)
            return False
        self.logger.warning("Removing the stale pid file %s (process %s is gone)",
                            pidfile.path, pid)
        try:
            pidfile.break_lock()
        except OSError as err:
            self.logger.error("Cannot remove the stale pid file %s: %s", pidfile.path, err)
            return False
        return True

    def _daemonize(self):
        """Open ``context``: detach, drop privileges, write the pid file. The process
        that called ``run`` exits 0 once the daemon serves, 1 if it cannot start.
        """
        pidfile = self.context.pidfile
        if pidfile is not None and not self._check_pidfile(pidfile):
            return False
        self._startup = _StartupReport()
        self.context.files_preserve = list(self.context.files_preserve or ()) + \
            [self._startup.wfd]
        self._startup.fork()
        try:
            self.context.open()
        except Exception as err:  # pylint: disable=broad-except
            self.logger.error("Failed to daemonize: %s", err)
            self._startup.report(False)
            return False
        try:
            import pwd
            os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            pass
        self.logger.info("%s daemonized (pid %s)", self.name, os.getpid())
        return True

    def run(self):
        try:
            return NetworkCore.run(self)
        finally:
            if self._startup is not None:
                self._startup.report(False)

    # ------------------------------------------------------------------ serving

    def _signal_stop(self, signum, frame):  # pylint: disable=unused-argument
        self.logger.info("Got signal %s: stopping", signum)
        self.stop()

    def stop(self):
        """Stop serving (safe from a signal handler); ``_block`` then shuts down."""
        self._stop_requested = True
        if self.server is not None:
            self.server.shutdown()

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._signal_stop)

    def _server_address(self):
        """The address to bind: the first getaddrinfo answer for the URL's host."""
        try:
            scheme, host, port = self.setup.url
        except OptionError as err:
            raise CoreInitError(str(err)) from None
        if scheme != "https":
            raise CoreInitError("[components] bcfg2 = %s: the builtin core serves https "
                                "only" % self.setup.server_url)
        try:
            return socket.getaddrinfo(host, port, socket.AF_UNSPEC,
                                      socket.SOCK_STREAM)[0][4]
        except socket.gaierror as err:
            raise CoreInitError("Cannot resolve %s: %s" % (host, err)) from None

    def _make_server(self, server_address):
        return XMLRPCServer(self.setup.listen_all, server_address,
                            keyfile=self.setup.key, certfile=self.setup.certificate,
                            ca=self.setup.ca, protocol=self.setup.protocol,
                            timeout=self.setup.socket_timeout, register=False,
                            request_queue_size=self.setup.socket_queue_size,
                            max_request_size=self.setup.max_request_size)

    def _run(self):
        """Create ``server``, listening (requests wait in the backlog until ``_block``)."""
        try:
            self.server = self._make_server(self._server_address())
        except CoreInitError as err:
            self.logger.error("Server startup failed: %s", err)
            return False
        except OSError as err:
            msg = os.strerror(err.errno) if err.errno in (errno.EADDRINUSE,
                                                          errno.EACCES) else err
            self.logger.error("Server startup failed: cannot listen on %s: %s",
                              self.setup.server_url, msg)
            return False
        self.server.register_instance(self)
        self._install_signal_handlers()
        return True

    def _block(self):
        """Serve until stopped, then shut down."""
        if self._startup is not None:
            self._startup.report(True)
        try:
            if not self._stop_requested:
                self.server.serve_forever(self.poll_interval)
        finally:
            self.shutdown()

    @property
    def bound_address(self):
        """``(host, port)`` the server listens on (None before ``_run``)."""
        if self.server is None:
            return None
        return self.server.socket.getsockname()[:2]

    def shutdown(self):
        """Stop serving, then shut the core down."""
        self._stop_requested = True
        server = self.server
        if server is not None:
            server.shutdown()
        NetworkCore.shutdown(self)
        if server is not None:
            try:
                server.server_close()
            except OSError:
                pass
        if self.context is not None and self.context.is_open:
            try:
                self.context.close()
            except Exception:  # pylint: disable=broad-except
                self.logger.debug("Closing the daemon context failed", exc_info=True)
