"""``bcfg2-cherry serve``: run the Bcfg2 server (upstream ``bcfg2-server``'s options plus
cherryd's), or ``--demo`` to serve the bundled demo repository with a generated
certificate on https://127.0.0.1:6789 (client password ``demo``).
"""
import importlib
import logging
import os
import shutil
import sys
from importlib.metadata import entry_points

from bcfg2_cherry import resources
from bcfg2_cherry.cli.common import (
    add_config_options, load_settings, setup_logging)
from bcfg2_cherry.server.errors import CoreInitError

logger = logging.getLogger(__name__)

CORE_GROUP = "bcfg2_cherry.cores"
DEMO_PORT = 6789


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "serve", help="run the Bcfg2 server",
        description="Run the Bcfg2 server: upstream bcfg2-server's options plus "
                    "cherryd's. With --demo, serve the bundled demo repository on "
                    "https://127.0.0.1:6789 with a generated certificate (client "
                    "password: demo).",
        epilog="Exit status: 0 after a clean stop, 1 when the server cannot start.")
    add_config_options(parser)
    parser.add_argument("-D", "--daemon", metavar="PIDFILE",
                        help="detach and write the process id to PIDFILE")
    parser.add_argument("-S", "--server", metavar="URL", dest="server_url",
                        help="listen address and port ([components] bcfg2)")
    parser.add_argument("-x", "--password", metavar="PASSWORD",
                        help="global client password ([communication] password)")
    parser.add_argument("--ssl-key", metavar="FILE", dest="key",
                        help="TLS private key ([communication] key)")
    parser.add_argument("--listen-all", action="store_true", default=None,
                        help="listen on all interfaces ([server] listen_all)")
    parser.add_argument("--no-fam-blocking", action="store_false", default=None,
                        dest="fam_blocking",
                        help="serve before the repository is read ([server] fam_blocking)")
    parser.add_argument("--children", type=int, metavar="N",
                        help="worker processes of the multiprocessing core")
    parser.add_argument("-E", "--encoding", metavar="ENCODING",
                        help="repository text encoding ([components] encoding)")
    parser.add_argument("--core", metavar="NAME",
                        help="network core: %s (default: [server] backend)"
                        % ", ".join(sorted(available_cores())))
    parser.add_argument("--cherrypy-config", metavar="FILE", action="append", default=[],
                        help="CherryPy config file applied after the server's own "
                             "(repeatable; cherryd's -c)")
    parser.add_argument("--environment", metavar="NAME",
                        help="CherryPy environment, e.g. production (cherryd's -e)")
    parser.add_argument("--import", metavar="MODULE", action="append", default=[],
                        dest="imports",
                        help="import MODULE before starting (repeatable; cherryd's -i)")
    parser.add_argument("--demo", action="store_true",
                        help="serve the bundled demo repository on 127.0.0.1 with a "
                             "generated certificate")
    parser.add_argument("--port", type=int, metavar="PORT",
                        help="listen on this port instead of the configured one "
                             "(demo default %d)" % DEMO_PORT)
    parser.add_argument("--state-dir", metavar="DIR", dest="state_dir",
                        help="where generated state lives ([server] state_dir; demo "
                             "default $XDG_STATE_HOME/bcfg2-cherry)")
    parser.set_defaults(func=run)
    return parser


def available_cores():
    """Names registered under the ``bcfg2_cherry.cores`` entry point."""
    return {ep.name: ep for ep in entry_points(group=CORE_GROUP)}


def load_core_class(name):
    """The network core class registered as ``name``; CoreInitError if unusable."""
    cores = available_cores()
    if name not in cores:
        raise CoreInitError("no network core named %r (known: %s)"
                            % (name, ", ".join(sorted(cores)) or "none"))
    try:
        return cores[name].load()
    except ImportError as err:
        raise CoreInitError("the %s core is not available: %s" % (name, err)) from None


def find_demo():
    """``(demo.conf, demo-repo)`` of the demo shipped with the package."""
    try:
        return resources.demo_config(), resources.demo_repository()
    except FileNotFoundError as err:
        raise CoreInitError(str(err)) from None


def _url_with_port(url, port):
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = "[%s]" % host
    return urlunsplit((parts.scheme or "https", "%s:%d" % (host, port), parts.path,
                       parts.query, parts.fragment))


def demo_settings(args):
    """Settings of the demo: demo.conf, a private copy of the demo repository and a
    generated CA and server certificate, all kept in the state directory.
    """
    from bcfg2_cherry.server.tls import default_state_dir, ensure_demo_certificates
    conf, repo = find_demo()
    state_dir = os.path.abspath(args.state_dir or default_state_dir())
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    # the server writes clients.xml and probe data: serve a copy, not the package
    served = os.path.join(state_dir, "demo-repo")
    if not os.path.isdir(served):
        shutil.copytree(repo, served)
        logger.info("Copied the demo repository to %s", served)
    tls = ensure_demo_certificates(state_dir)
    args.config = args.config or conf
    extra = {"repository": args.repository or served, "state_dir": state_dir,
             "server_url": args.server_url or "https://127.0.0.1:%d" % DEMO_PORT,
             "certificate": tls["certificate"], "key": args.key or tls["key"],
             "ca": tls["ca"]}
    args.repository = None
    return extra


def run(args):
    extra = {}
    try:
        if args.demo:
            extra = demo_settings(args)
    except (CoreInitError, OSError) as err:
        sys.stderr.write("bcfg2-cherry serve: %s\n" % err)
        return 1
    for name in ("server_url", "password", "key", "listen_all", "fam_blocking",
                 "children", "encoding", "state_dir"):
        value = getattr(args, name, None)
        if value is not None and name not in extra:
            extra[name] = value
    if args.daemon:
        extra["daemon"] = os.path.abspath(args.daemon)
    settings = load_settings(args, **extra)
    if args.port is not None:
        settings.overrides["server_url"] = _url_with_port(settings.server_url, args.port)
        settings.reload()
    setup_logging(settings, to_console=not args.daemon)
    try:
        for module in args.imports:
            importlib.import_module(module)
        cls = load_core_class(args.core or settings.backend)
        core = cls(settings)
    except CoreInitError as err:
        logger.error("%s", err)
        sys.stderr.write("bcfg2-cherry serve: %s\n" % err)
        return 1
    except ImportError as err:
        sys.stderr.write("bcfg2-cherry serve: --import: %s\n" % err)
        return 1
    if hasattr(cls, "cherrypy_config_files"):
        core.cherrypy_config_files = list(args.cherrypy_config)
        core.environment = args.environment
    elif args.cherrypy_config or args.environment:
        logger.warning("--cherrypy-config and --environment only apply to the cherrypy "
                       "core")
    if args.demo:
        logger.warning("Demo server: https://%s:%s, client password %r, CA %s",
                       settings.url[1], settings.url[2], settings.password, settings.ca)
    try:
        ok = core.run()
    except CoreInitError as err:
        logger.error("Cannot start the server: %s", err)
        return 1
    except KeyboardInterrupt:
        core.shutdown()
        return 0
    return 0 if ok else 1
