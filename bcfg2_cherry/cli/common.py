"""Options and logging set-up shared by every subcommand."""
import logging
import logging.handlers
import os
import sys

from bcfg2_cherry.options import OptionError, Settings



def add_config_options(parser):
    """-C/-Q/-d/-v/--plugins: what every server-side command reads."""
    parser.add_argument("-C", "--config", metavar="FILE",
                        help="bcfg2.conf to read (default: $BCFG2_CONFIG_FILE or "
                             "/etc/bcfg2.conf)")
    parser.add_argument("-Q", "--repository", metavar="DIR",
                        help="repository directory ([server] repository)")
    parser.add_argument("-d", "--debug", action="store_true", default=None,
                        help="debug logging ([logging] debug)")
    parser.add_argument("-v", "--verbose", action="store_true", default=None,
                        help="verbose logging ([logging] verbose)")
    parser.add_argument("--plugins", metavar="LIST",
                        help="comma-separated plugins to load ([server] plugins)")
    parser.add_argument("-o", "--logfile", metavar="FILE", help="log to this file")


def overrides_from_args(args, **extra):
    """The Settings overrides the command line gave."""
    over = {"repository": args.repository, "plugins": args.plugins,
            "debug": args.debug, "verbose": args.verbose,
            "logfile": getattr(args, "logfile", None)}
    over.update(extra)
    return {key: value for key, value in over.items() if value is not None}


def load_settings(args, **extra):
    """Settings from -C and the command line; exits with one clear line on error."""
    try:
        return Settings(args.config, overrides_from_args(args, **extra))
    except OptionError as err:
        sys.stderr.write("bcfg2-cherry: %s\n" % err)
        raise SystemExit(2) from None


def setup_logging(settings, to_console=True):
    """Root logging from [logging]: console (verbose/debug), file, syslog."""
    level = logging.DEBUG if settings.debug else (
        logging.INFO if settings.verbose else logging.WARNING)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(name)s[%(process)d]: %(levelname)s %(message)s")
    if to_console:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        root.addHandler(console)
    if settings.logfile:
        handler = logging.handlers.WatchedFileHandler(settings.logfile)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    if settings.syslog and os.path.exists("/dev/log") and not to_console:
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("bcfg2-cherry[%(process)d]: %(name)s: "
                                               "%(message)s"))
        root.addHandler(handler)
