"""``bcfg2-cherry client``: a Bcfg2 client run that never changes this machine.

Performs the calls of an upstream client run (AssertProfile with -p, DeclareVersion,
GetProbes, the probes, RecvProbeData, GetDecisionList with -l, GetConfig) and prints
the configuration, or saves it exactly as the server sent it with -o. With --report the
server also receives a statistics document marked as a dry run. Connection settings
default from bcfg2.conf as the upstream client reads them.
"""
import logging
import sys

from bcfg2_cherry.client.proxy import Proxy, ProxyError
from bcfg2_cherry.client.run import (
    DEFAULT_PROBE_TIMEOUT,
    PROTOCOL_VERSION,
    ClientRun,
    RunError,
)
from bcfg2_cherry.options import OptionError, Settings
from bcfg2_cherry.state import atomic_write

logger = logging.getLogger(__name__)


def add_connection_options(parser):
    """The options of every command that talks to a server (upstream's flags)."""
    group = parser.add_argument_group("connection (defaults from bcfg2.conf)")
    group.add_argument("-C", "--config", metavar="FILE",
                       help="bcfg2.conf to read (default: $BCFG2_CONFIG_FILE or "
                            "/etc/bcfg2.conf)")
    group.add_argument("-S", "--server", metavar="URL",
                       help="server URL with port ([components] bcfg2)")
    group.add_argument("-u", "--user", metavar="USER",
                       help="user name: root (identify by address), a client name or "
                            "uuid ([communication] user)")
    group.add_argument("-x", "--password", metavar="PASSWORD",
                       help="password ([communication] password)")
    group.add_argument("--ca", metavar="FILE",
                       help="CA certificate that signed the server's "
                            "([communication] ca)")
    group.add_argument("--cert", metavar="FILE",
                       help="client certificate ([communication] certificate)")
    group.add_argument("--key", "--ssl-key", dest="key", metavar="FILE",
                       help="client certificate key ([communication] key)")
    group.add_argument("--ssl-cns", metavar="NAME[:NAME...]",
                       help="accepted server certificate commonNames "
                            "([communication] serverCommonNames)")
    group.add_argument("-t", "--timeout", type=float, metavar="SECONDS",
                       help="socket timeout per call ([communication] timeout)")
    group.add_argument("-R", "--retries", type=int, metavar="N",
                       help="attempts per call on connection failures "
                            "([communication] retries)")
    group.add_argument("-y", "--retry-delay", type=float, metavar="SECONDS",
                       help="first pause between attempts, doubled each time "
                            "([communication] retry_delay)")
    group.add_argument("--source-address", metavar="IP",
                       help="local address to connect from")
    parser.add_argument("-d", "--debug", action="store_true", default=None,
                        help="debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", default=None,
                        help="verbose logging")


def load_settings(args):
    """Settings from -C and the connection flags; exits 2 with one line on error."""
    over = {"server_url": args.server, "comm_user": args.user,
            "password": args.password, "ca": args.ca, "server_cns": args.ssl_cns,
            "timeout": args.timeout, "retries": args.retries,
            "retry_delay": args.retry_delay, "debug": args.debug,
            "verbose": args.verbose, "syslog": False}
    try:
        return Settings(args.config, {k: v for k, v in over.items() if v is not None})
    except OptionError as err:
        fail("bcfg2-cherry: %s" % err, status=2)


def make_proxy(args, settings):
    """The Proxy the command line and bcfg2.conf describe; exits on a bad setting."""
    try:
        return Proxy.from_settings(settings, cert=args.cert, key=args.key,
                                   source_address=args.source_address)
    except ProxyError as err:
        fail("bcfg2-cherry: %s" % err)


def setup_logging(settings):
    """Console logging: warnings, or more with -v/-d ([logging] as well)."""
    level = logging.DEBUG if settings.debug else (
        logging.INFO if settings.verbose else logging.WARNING)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


class CommandError(Exception):
    """Ends a command: ``str()`` is the one line printed, ``status`` the exit status."""

    def __init__(self, message, status=1):
        Exception.__init__(self, message)
        self.status = status


def fail(message, status=1):
    """Stop the command with one line on stderr and exit ``status``."""
    raise CommandError(message, status)


def report_errors(func):
    """Wrap a command's ``func(args)``: a CommandError becomes its line and status."""
    def wrapper(args):
        try:
            return func(args) or 0
        except CommandError as err:
            sys.stderr.write(str(err).rstrip() + "\n")
            return err.status
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "client", help="a dry client run: fetch and print a host's configuration",
        description=__doc__)
    add_connection_options(parser)
    parser.add_argument("-p", "--profile", metavar="GROUP",
                        help="assert this profile first ([client] profile)")
    parser.add_argument("-l", "--decision", choices=["whitelist", "blacklist", "none"],
                        help="fetch the decision list ([client] decision)")
    parser.add_argument("-n", "--dry-run", action="store_true",
                        help="accepted for upstream compatibility: every run is dry")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="save the configuration (as sent, mode 0600) instead of "
                             "printing it")
    parser.add_argument("--report", action="store_true",
                        help="upload a dry-run statistics document (RecvStats)")
    parser.add_argument("--no-probes", action="store_true",
                        help="do not run the server's probes (nor upload probe data)")
    parser.add_argument("--probe-timeout", type=float, metavar="SECONDS",
                        help="kill a probe after this long ([client] probe_timeout, "
                             "default %d)" % DEFAULT_PROBE_TIMEOUT)
    parser.add_argument("--no-exit-on-probe-failure", dest="exit_on_probe_failure",
                        action="store_false", default=None,
                        help="send a failed probe's output instead of stopping "
                             "([client] exit_on_probe_failure)")
    parser.add_argument("--declare-version", metavar="VERSION", default=None,
                        help="client version sent with DeclareVersion (default %s)"
                             % PROTOCOL_VERSION)
    parser.set_defaults(func=run)
    return parser


def _client_option(settings, name, convert, default):
    raw = settings.get("client", name)
    if raw is None:
        return default
    try:
        return convert(raw)
    except ValueError:
        fail("bcfg2-cherry: %s: [client] %s = %s is not valid"
             % (settings.config_file, name, raw), status=2)


@report_errors
def run(args):
    """The ``client`` command."""
    settings = load_settings(args)
    setup_logging(settings)
    proxy = make_proxy(args, settings)
    decision = args.decision or _client_option(settings, "decision", str, None)
    exit_on_failure = args.exit_on_probe_failure
    if exit_on_failure is None:
        try:
            exit_on_failure = settings.getbool("client", "exit_on_probe_failure", True)
        except OptionError as err:
            fail("bcfg2-cherry: %s" % err, status=2)
    timeout = args.probe_timeout
    if timeout is None:
        timeout = _client_option(settings, "probe_timeout", float, DEFAULT_PROBE_TIMEOUT)
    try:
        client_run = ClientRun(
            proxy, profile=args.profile or settings.get("client", "profile"),
            decision=decision, run_probes=not args.no_probes, probe_timeout=timeout,
            exit_on_probe_failure=exit_on_failure, report=args.report,
            version=args.declare_version or PROTOCOL_VERSION,
            encoding=settings.encoding or "UTF-8")
    except ValueError as err:
        fail("bcfg2-cherry client: %s" % err, status=2)
    try:
        result = client_run.run()
    except RunError as err:
        fail("bcfg2-cherry client: %s" % err)
    if args.output:
        try:
            atomic_write(args.output, result.text, mode=0o600)
        except OSError as err:
            fail("bcfg2-cherry client: cannot write %s: %s" % (args.output, err))
    else:
        import lxml.etree

        sys.stdout.write(lxml.etree.tostring(result.config, pretty_print=True,
                                             encoding="unicode"))
        sys.stdout.flush()
    if result.report_error:
        fail("bcfg2-cherry client: %s" % result.report_error, status=2)
    return 0
