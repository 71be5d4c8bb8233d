"""bcfg2.conf and the command line, read into one typed ``Settings`` object.

Section and option names, types and defaults are upstream's (spec/config.md). Options
this server adds have defaults that leave an upstream bcfg2.conf working unchanged.
Precedence: command line > file > default.
"""
import configparser
import ipaddress
import logging
import os
import re

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/bcfg2.conf"
DEFAULT_PLUGINS = "Bundler, Cfg, Metadata, Pkgmgr, Rules, SSHbase"
DEFAULT_IGNORE = "*~, *#, .#*, *.swp, *.swpx, .*.swx, SCCS, .svn, 4913, .gitignore"
CACHE_MODES = ("off", "initial", "cautious", "aggressive", "on")


class OptionError(ValueError):
    """A value in bcfg2.conf or on the command line has the wrong form."""


# -- value types: each takes the raw string and returns the typed value or raises ValueError

def _bool(value):
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in ("1", "yes", "true", "on"):
        return True
    if low in ("0", "no", "false", "off"):
        return False
    raise ValueError("expected a boolean (yes/no, true/false, on/off, 1/0)")


def _comma_list(value):
    if isinstance(value, (list, tuple)):
        return list(value)
    return [item.strip() for item in str(value).split(",") if item.strip()]


def _colon_list(value):
    if isinstance(value, (list, tuple)):
        return list(value)
    return [item for item in str(value).split(":") if item]


def _octal(value):
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 8)
    except ValueError:
        raise ValueError("expected an octal number") from None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError("expected an integer") from None


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number") from None


def _size(value):
    """A byte count, optionally with a K/M/G suffix (binary multiples)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[bB]?\s*", str(value))
    if not match:
        raise ValueError("expected a size such as 10485760, 512K or 64M")
    mult = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[match.group(2).lower()]
    return int(match.group(1)) * mult


def _str(value):
    return None if value is None else str(value)


def _networks(value):
    nets = []
    for item in _comma_list(value):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError("expected addresses or CIDR networks, got %r" % item) from None
    return nets


class Option:
    """One bcfg2.conf option: where it lives, its attribute name, type and default."""

    def __init__(self, section, name, attr=None, type=_str, default=None, path=False):
        self.section = section
        self.name = name
        self.attr = attr or name
        self.type = type
        self.default = default
        self.path = path


#: Every option the server reads. Plugins read their own sections through Settings.get*.
OPTIONS = [
    Option("server", "repository", type=_str, default="/var/lib/bcfg2", path=True),
    Option("server", "plugins", type=_comma_list, default=DEFAULT_PLUGINS),
    Option("server", "backend", default="cherrypy"),
    Option("server", "filemonitor", default="default"),
    Option("server", "fam_blocking", type=_bool, default="true"),
    Option("server", "ignore_files", type=_comma_list, default=DEFAULT_IGNORE),
    Option("server", "listen_all", type=_bool, default="false"),
    Option("server", "user", default="0"),
    Option("server", "group", default="0"),
    Option("server", "umask", type=_octal, default="0077"),
    Option("server", "children", type=_int, default=None),
    Option("server", "vcs_root", default="<repository>", path=True),
    Option("server", "max_request_size", type=_size, default="64M"),
    Option("server", "thread_pool", type=_int, default="32"),
    Option("server", "socket_queue_size", type=_int, default="128"),
    Option("server", "socket_timeout", type=_float, default="10"),
    Option("server", "trusted_proxies", type=_networks, default=""),
    Option("server", "client_cert_header", default="X-SSL-Client-Cert"),
    Option("server", "client_verify_header", default="X-SSL-Client-Verify"),
    Option("server", "state_dir", default=None, path=True),
    Option("components", "bcfg2", attr="server_url", default="https://localhost:6789"),
    Option("components", "encoding", default="UTF-8"),
    Option("communication", "password", default=None),
    Option("communication", "protocol", default="xmlrpc/tlsv1"),
    Option("communication", "key", default="/etc/pki/tls/private/bcfg2.key", path=True),
    Option("communication", "certificate", default="/etc/pki/tls/certs/bcfg2.crt",
           path=True),
    Option("communication", "ca", default=None, path=True),
    Option("communication", "authentication", default="cert+password"),
    Option("communication", "user", attr="comm_user", default="root"),
    Option("communication", "retries", type=_int, default="3"),
    Option("communication", "retry_delay", type=_float, default="1"),
    Option("communication", "timeout", type=_float, default="90"),
    Option("communication", "serverCommonNames", attr="server_cns", type=_colon_list,
           default=""),
    Option("logging", "debug", type=_bool, default="false"),
    Option("logging", "verbose", type=_bool, default="false"),
    Option("logging", "path", attr="logfile", default=None, path=True),
    Option("logging", "syslog", type=_bool, default="true"),
    Option("logging", "performance", type=_bool, default="false"),
    Option("logging", "performance_interval", type=_float, default="300"),
    Option("caching", "client_metadata", attr="cache_mode", default="off"),
    Option("mdata", "owner", attr="mdata_owner", default="root"),
    Option("mdata", "group", attr="mdata_group", default="root"),
    Option("mdata", "mode", attr="mdata_mode", default="644"),
    Option("mdata", "secontext", attr="mdata_secontext", default="__default__"),
    Option("mdata", "important", attr="mdata_important", default="false"),
    Option("mdata", "paranoid", attr="mdata_paranoid", default="true"),
    Option("mdata", "sensitive", attr="mdata_sensitive", default="false"),
]


class Settings:
    """Typed view of bcfg2.conf plus command-line overrides.

    Core options are attributes (``settings.repository``, ``settings.plugins``, ...);
    any other option is read with ``get``/``getbool``/``getint``/``getlist``.
    """

    def __init__(self, config_file=None, overrides=None):
        if config_file is None:
            config_file = os.environ.get("BCFG2_CONFIG_FILE", DEFAULT_CONFIG)
        self.config_file = os.path.abspath(config_file) if config_file else None
        #: attribute -> value given on the command line (or by an embedding program)
        self.overrides = dict(overrides or {})
        self.daemon = self.overrides.pop("daemon", None)
        self.parser = None
        self.reload()

    # -- reading

    def reload(self):
        """(Re-)read the file; raise OptionError naming the bad value."""
        parser = configparser.ConfigParser(
            interpolation=configparser.BasicInterpolation(), strict=False)
        parser.optionxform = str.lower
        if self.config_file and os.path.exists(self.config_file):
            try:
                with open(self.config_file, encoding="utf-8") as fh:
                    parser.read_file(fh, source=self.config_file)
            except (configparser.Error, UnicodeDecodeError) as err:
                raise OptionError("%s: %s" % (self.config_file, err)) from None
        self.parser = parser
        repo = None
        for opt in OPTIONS:
            value = self._value(opt, repo)
            setattr(self, opt.attr, value)
            if opt.attr == "repository":
                repo = value
        self._derive()
        return self

    def _raw(self, section, name):
        try:
            return self.parser.get(section, name)
        except (configparser.NoSectionError, configparser.NoOptionError):
            return None
        except configparser.Error as err:
            raise OptionError("%s: [%s] %s: %s" % (self.config_file, section, name,
                                                   err)) from None

    def _value(self, opt, repo):
        if opt.attr in self.overrides and self.overrides[opt.attr] is not None:
            raw, where = self.overrides[opt.attr], "command line"
        else:
            raw = self._raw(opt.section, opt.name)
            where = self.config_file
            if raw is None:
                raw, where = opt.default, "default"
        if raw is None:
            return None
        try:
            value = opt.type(raw)
        except ValueError as err:
            raise OptionError("%s: [%s] %s = %s: %s" % (
                where, opt.section, opt.name, raw, err)) from None
        if opt.path and isinstance(value, str):
            value = self._path(value, repo)
        return value

    def _path(self, value, repo=None):
        if repo is None:
            repo = getattr(self, "repository", None)
        if repo:
            value = value.replace("<repository>", repo)
        return os.path.abspath(os.path.expanduser(value))

    def _derive(self):
        if self.cache_mode == "on":
            self.cache_mode = "cautious"
        if self.cache_mode not in CACHE_MODES:
            logger.error("[caching] client_metadata = %s is not one of %s; using off",
                         self.cache_mode, ", ".join(CACHE_MODES))
            self.cache_mode = "off"
        if self.children is None:
            self.children = os.cpu_count() or 1
        if self.authentication not in ("cert", "cert+password", "bootstrap"):
            logger.error("[communication] authentication = %s is unknown; "
                         "behaving as cert+password", self.authentication)
        self.backend = (self.backend or "cherrypy").strip().lower()
        if self.backend == "best":
            self.backend = "builtin"

    # -- generic access for plugin sections

    def get(self, section, option, default=None):
        value = self._raw(section, option)
        return default if value is None else value

    def getbool(self, section, option, default=False):
        value = self._raw(section, option)
        if value is None:
            return default
        try:
            return _bool(value)
        except ValueError as err:
            raise OptionError("%s: [%s] %s = %s: %s" % (
                self.config_file, section, option, value, err)) from None

    def getint(self, section, option, default=None):
        value = self._raw(section, option)
        if value is None:
            return default
        try:
            return _int(value)
        except ValueError as err:
            raise OptionError("%s: [%s] %s = %s: %s" % (
                self.config_file, section, option, value, err)) from None

    def getlist(self, section, option, default=()):
        value = self._raw(section, option)
        return list(default) if value is None else _comma_list(value)

    def getpath(self, section, option, default=None):
        value = self._raw(section, option)
        if value is None:
            value = default
        return None if value is None else self._path(value)

    def items(self, section):
        """All options of a section as a dict (e.g. the passphrases of [encryption])."""
        if not self.parser.has_section(section):
            return {}
        return {name: self.parser.get(section, name, raw=True)
                for name in self.parser.options(section)}

    @property
    def mdata(self):
        """The default attributes of Cfg-served Paths, from [mdata]."""
        return {key: getattr(self, "mdata_" + key) for key in
                ("owner", "group", "mode", "secontext", "important", "paranoid",
                 "sensitive")}

    @property
    def url(self):
        """The parsed ``[components] bcfg2`` URL: (scheme, host, port)."""
        from urllib.parse import urlsplit
        parts = urlsplit(self.server_url)
        if not parts.port:
            raise OptionError("[components] bcfg2 = %s: the URL needs an explicit port"
                              % self.server_url)
        return parts.scheme or "https", parts.hostname or "localhost", parts.port
