"""``bcfg2-cherry info``: look into a repository the way the server sees it.

Loads the repository in-process (no network) and answers one command: clients, groups,
bundles, showclient HOST, build HOST, buildfile PATH HOST, plugins, or debug (an
interactive Python shell with ``core`` bound).
"""
import code
import sys

import lxml.etree

from bcfg2_cherry.cli.common import add_config_options, load_settings, setup_logging
from bcfg2_cherry.server.core import CoreInitError, sort_xml
from bcfg2_cherry.server.errors import Fault
from bcfg2_cherry.server.local_core import LocalCore


def add_parser(subparsers):
    parser = subparsers.add_parser("info", help="inspect a repository without a server",
                                   description=__doc__)
    add_config_options(parser)
    sub = parser.add_subparsers(dest="info_command", metavar="COMMAND", required=True)
    sub.add_parser("clients", help="list the clients")
    sub.add_parser("groups", help="list the groups with their flags")
    sub.add_parser("bundles", help="list the bundles")
    sub.add_parser("plugins", help="list the loaded plugins")
    p = sub.add_parser("showclient", help="show the metadata of a client")
    p.add_argument("host")
    p = sub.add_parser("build", help="print the Configuration document of a client")
    p.add_argument("host")
    p.add_argument("-f", "--file", metavar="FILE", help="write it to FILE instead")
    p = sub.add_parser("buildfile", help="print one Path entry as the client gets it")
    p.add_argument("path")
    p.add_argument("host")
    p.add_argument("--altsrc", help="bind PATH from this other source")
    sub.add_parser("debug", help="an interactive shell with `core` bound")
    parser.set_defaults(func=run)
    return parser


def _out(text=""):
    sys.stdout.write(text + "\n")


def _table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        _out("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def cmd_clients(core, args):
    for name in sorted(core.metadata.list_clients()):
        _out(name)


def cmd_groups(core, args):
    rows = []
    for name, group in sorted(core.metadata.groups.items()):
        rows.append([name, "yes" if getattr(group, "is_profile", False) else "no",
                     "yes" if getattr(group, "is_public", False) else "no",
                     getattr(group, "category", None) or "",
                     ",".join(sorted(getattr(group, "bundles", ())))])
    _table(rows, ["group", "profile", "public", "category", "bundles"])


def cmd_bundles(core, args):
    bundler = core.plugins.get("Bundler")
    if bundler is None:
        _out("(the Bundler plugin is not loaded)")
        return 1
    for name in sorted(bundler.bundle_names()):
        _out(name)


def cmd_plugins(core, args):
    rows = [[name, plugin.__class__.__module__, plugin.sort_order]
            for name, plugin in sorted(core.plugins.items())]
    _table(rows, ["plugin", "module", "sort order"])


def cmd_showclient(core, args):
    md = core.build_metadata(args.host)
    fields = [("Hostname", md.hostname), ("Profile", md.profile),
              ("Aliases", ", ".join(sorted(md.aliases))),
              ("Addresses", ", ".join(sorted(md.addresses))),
              ("Groups", ", ".join(sorted(md.groups))),
              ("Bundles", ", ".join(sorted(md.bundles))),
              ("Categories", ", ".join("%s: %s" % kv for kv in
                                       sorted(md.categories.items()))),
              ("UUID", md.uuid or ""), ("Version", md.version or ""),
              ("Connectors", ", ".join(md.connectors))]
    for label, value in fields:
        _out("%-12s %s" % (label + ":", value))


def cmd_build(core, args):
    config = core.BuildConfiguration(args.host)
    text = lxml.etree.tostring(config, pretty_print=True, encoding="unicode")
    if args.file:
        with open(args.file, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 1 if config.tag == "error" else 0


def cmd_buildfile(core, args):
    md = core.build_metadata(args.host)
    entry = lxml.etree.Element("Path", name=args.path)
    if args.altsrc:
        entry.set("altsrc", args.altsrc)
    struct = lxml.etree.Element("Independent", name="buildfile")
    struct.append(entry)
    core.BindStructure(struct, md)
    sort_xml(struct)
    sys.stdout.write(lxml.etree.tostring(entry, pretty_print=True, encoding="unicode"))
    return 1 if entry.get("failure") else 0


def cmd_debug(core, args):
    code.interact(banner="bcfg2-cherry debug shell: `core` is the loaded core",
                  local={"core": core}, exitmsg="")


def run(args):
    settings = load_settings(args)
    setup_logging(settings)
    try:
        core = LocalCore(settings).load()
    except CoreInitError as err:
        sys.stderr.write("bcfg2-cherry info: %s\n" % err)
        return 1
    try:
        return globals()["cmd_" + args.info_command](core, args) or 0
    except Fault as fault:
        sys.stderr.write("bcfg2-cherry info: %s\n" % fault.faultString)
        return 1
    finally:
        core.shutdown()
