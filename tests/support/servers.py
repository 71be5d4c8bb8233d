"""Start a real ``bcfg2-cherry serve`` in a subprocess, on 127.0.0.1, with real TLS.

``start_server(core, config_path, ...)`` returns a running ``ServerProcess`` once it
answers requests (not 503); ``write_config`` writes the bcfg2.conf for it;
``available_cores()`` lists the network cores whose module imports (the conformance
suite runs against each). Waits are bounded; a server that exits early raises with its
log in the message.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import entry_points

from tests.support.rawclient import RawClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
WIRE_DIR = os.environ.get("BCFG2_WIRE_DIR") or os.path.join(
    ROOT, "tests", "conformance", "wire")
#: the plugins upstream's recording server ran with (wire/README.md)
WIRE_PLUGINS = "Metadata, Bundler, Rules, Cfg, Probes"
WIRE_PASSWORD = "wiredemo-global"


def available_cores():
    """``{name: import error or None}`` for every registered network core."""
    found = {}
    for ep in entry_points(group="bcfg2_cherry.cores"):
        try:
            ep.load()
            found[ep.name] = None
        except ImportError as err:
            found[ep.name] = str(err)
    return found


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def copy_repo(source, target):
    """A writable copy of a repository (the recorded ones are read-only)."""
    shutil.copytree(source, target)
    for dirpath, _dirnames, filenames in os.walk(target):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return str(target)


def write_config(path, repository, *, tls=None, port=0, host="127.0.0.1",
                 scheme="https", password=WIRE_PASSWORD, plugins=WIRE_PLUGINS,
                 ca=True, server=None, communication=None, extra=""):
    """Write a bcfg2.conf for a test server; returns its path.

    ``tls`` is the session TestCA (tests/conftest.py); ``ca`` False leaves
    ``[communication] ca`` out (no client certificates); ``server`` and
    ``communication`` add options to those sections; ``extra`` is appended verbatim.
    The port is filled in by ``start_server`` when 0.
    """
    lines = ["[server]", "repository = %s" % repository, "plugins = %s" % plugins,
             "filemonitor = pseudo", "backend = cherrypy"]
    lines += ["%s = %s" % item for item in (server or {}).items()]
    lines += ["", "[components]",
              "bcfg2 = %s://%s:%s" % (scheme, "[%s]" % host if ":" in host else host,
                                      port or "{port}"),
              "", "[communication]", "protocol = xmlrpc/ssl"]
    if password is not None:
        lines.append("password = %s" % password)
    if tls is not None:
        lines += ["certificate = %s" % tls.server_cert, "key = %s" % tls.server_key]
        if ca:
            lines.append("ca = %s" % tls.ca_cert)
    lines += ["%s = %s" % item for item in (communication or {}).items()]
    lines += ["", "[logging]", "syslog = false", ""]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + extra)
    return str(path)


class ServerProcess:
    """A running ``bcfg2-cherry serve``: ``host``, ``port``, ``scheme``, ``proc``,
    ``config`` (the bcfg2.conf actually used), ``log_path``; ``client()`` makes a
    RawClient for it, ``stop()`` sends SIGTERM and returns the exit status.
    """

    def __init__(self, core, proc, config, host, port, scheme, ca, log_path):
        self.core, self.proc, self.config = core, proc, config
        self.host, self.port, self.scheme = host, port, scheme
        self.ca = ca
        self.log_path = log_path

    @property
    def url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%s" % (self.scheme, host, self.port)

    def client(self, user="root", password=WIRE_PASSWORD, **kwargs):
        kwargs.setdefault("ca", self.ca)
        return RawClient(self.host, self.port, scheme=self.scheme, user=user,
                         password=password, **kwargs)

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the server and wait (bounded) for it; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def server_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get(
        "PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def serve_command(core, config, *args):
    """The command line that runs ``bcfg2-cherry serve`` with this interpreter."""
    return [sys.executable, "-m", "bcfg2_cherry", "serve", "--core", core, "-C", config,
            *args]


def wait_ready(host, port, scheme, ca, proc=None, timeout=30.0, log=lambda: ""):
    """Wait until the server answers something other than 503 (bounded)."""
    client = RawClient(host, port, scheme=scheme, ca=ca, timeout=5)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s before serving:\n%s"
                               % (proc.returncode, log()))
        try:
            resp = client.request(b"", auth=False)
            if resp.status != 503:
                return
            last = "503"
        except OSError as err:
            last = err
        time.sleep(0.05)
    raise RuntimeError("server not ready after %ss (%s):\n%s" % (timeout, last, log()))


def start_server(core, config, directory, *, tls=None, host="127.0.0.1", port=None,
                 scheme="https", args=(), ready_timeout=30.0, attempts=3):
    """Start ``bcfg2-cherry serve --core CORE -C CONFIG`` and wait until it serves.

    ``config`` may contain ``{port}``: it is replaced by a free port (retried with
    another port if the server cannot listen). Output goes to ``directory/NAME.log``.
    """
    with open(config, encoding="utf-8") as fh:
        template = fh.read()
    for attempt in range(attempts):
        use_port = port or free_port(host)
        conf_path = os.path.join(str(directory), "bcfg2-%s-%d.conf" % (core, use_port))
        with open(conf_path, "w", encoding="utf-8") as fh:
            fh.write(template.replace("{port}", str(use_port)))
        log_path = os.path.join(str(directory), "server-%s-%d.log" % (core, use_port))
        logfh = open(log_path, "wb")
        proc = subprocess.Popen(serve_command(core, conf_path, *args), stdout=logfh,
                                stderr=subprocess.STDOUT, env=server_env(), cwd=ROOT,
                                start_new_session=True)
        logfh.close()
        server = ServerProcess(core, proc, conf_path, host, use_port, scheme,
                               tls.ca_cert if tls is not None else None, log_path)
        try:
            wait_ready(host, use_port, scheme, server.ca, proc, ready_timeout,
                       log=server.log)
            return server
        except RuntimeError:
            server.stop(signal.SIGKILL)
            listen_failed = "Cannot listen" in server.log()
            if port or not listen_failed or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
