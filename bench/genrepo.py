#!/usr/bin/env python3
"""Generate a Bcfg2 repository for the build benchmark (bench/bench_build.py).

Shape (defaults): 1,000 clients over 20 profiles (10 roles x 2 operating systems);
50 bundles of 23 entries (17 Cfg Paths, 1 directory Path, 4 Packages, 1 Service),
11 bundles per client, so about 250 entries per configuration. A third of the Cfg
files are Jinja2 templates; a quarter of the entries have a group-specific version
(``.G50_<os>`` beats ``.G10_<role>``), a tenth have host-specific versions for a few
dozen clients, an eighth an info.xml (some with Group conditionals). Rules bind the
packages, services and directories. The output is deterministic for a given seed.

    python bench/genrepo.py /tmp/benchrepo [--clients 1000] [--bundles 50]
"""
import argparse
import os
import random
import shutil

OSES = ("debian", "redhat")
ROLES = 10
BASE_BUNDLES = 5
OS_BUNDLES = 2
ROLE_BUNDLES = 4
CFG_PER_BUNDLE = 17
PACKAGES_PER_BUNDLE = 4

PLAIN = """# {name}
# generated for the bcfg2_cherry build benchmark
[main]
enabled = true
retries = {n}
timeout = {t}
log_level = info
{body}
"""

TEMPLATE = """# {{{{ name }}}} for {{{{ metadata.hostname }}}}
# profile {{{{ metadata.profile }}}}
[main]
{{% for group in metadata.groups|sort %}}member_of_{{{{ group }}}} = yes
{{% endfor %}}
{{% if 'debian' in metadata.groups %}}packages = apt{{% else %}}packages = yum{{% endif %}}
bundles = {{{{ metadata.bundles|sort|join(', ') }}}}
retries = {n}
"""

INFO_PLAIN = '<FileInfo>\n  <Info owner="root" group="root" mode="0640"/>\n</FileInfo>\n'
INFO_GROUPS = """<FileInfo>
  <Group name="redhat">
    <Info owner="root" group="wheel" mode="0600" sensitive="true"/>
  </Group>
  <Info owner="root" group="adm" mode="0644"/>
</FileInfo>
"""


def client_name(i):
    return "client%04d.bench.example" % i


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def bundle_layout(bundles):
    """(base bundle names, {os: names}, {role: names}) for ``bundles`` bundles."""
    names = ["bundle%02d" % i for i in range(bundles)]
    base = names[:BASE_BUNDLES]
    rest = names[BASE_BUNDLES:]
    by_os = {os_: rest[i * OS_BUNDLES:(i + 1) * OS_BUNDLES] for i, os_ in enumerate(OSES)}
    rest = rest[len(OSES) * OS_BUNDLES:]
    by_role = {"role%d" % r: [rest[(r * ROLE_BUNDLES + k) % len(rest)]
                              for k in range(ROLE_BUNDLES)] for r in range(ROLES)}
    return base, by_os, by_role


def generate(target, clients=1000, bundles=50, seed=4):
    """Write the repository into ``target`` (emptied first); returns a summary dict."""
    rnd = random.Random(seed)
    if os.path.exists(target):
        shutil.rmtree(target)
    base, by_os, by_role = bundle_layout(bundles)
    hosts = [client_name(i) for i in range(clients)]

    # Metadata
    lines = ["<Groups>"]
    for role in sorted(by_role):
        for os_ in OSES:
            lines.append('  <Group name="%s-%s" profile="true"%s>' % (
                role, os_, ' public="true" default="true"'
                if (role, os_) == ("role0", "debian") else ""))
            for group in ("base", os_, role):
                lines.append('    <Group name="%s"/>' % group)
            lines.append("  </Group>")
    lines.append('  <Group name="base">')
    lines.extend('    <Bundle name="%s"/>' % b for b in base)
    lines.append("  </Group>")
    for os_ in OSES:
        lines.append('  <Group name="%s" category="os">' % os_)
        lines.extend('    <Bundle name="%s"/>' % b for b in by_os[os_])
        lines.append("  </Group>")
    for role in sorted(by_role):
        lines.append('  <Group name="%s">' % role)
        lines.extend('    <Bundle name="%s"/>' % b for b in by_role[role])
        lines.append("  </Group>")
    lines.append("</Groups>")
    write(os.path.join(target, "Metadata", "groups.xml"), "\n".join(lines) + "\n")
    lines = ['<Clients version="3.0">']
    for i, host in enumerate(hosts):
        lines.append('  <Client name="%s" profile="role%d-%s" address="10.%d.%d.%d"/>' % (
            host, i % ROLES, OSES[(i // ROLES) % 2], 1 + i // 65536, (i // 256) % 256,
            i % 256))
    lines.append("</Clients>")
    write(os.path.join(target, "Metadata", "clients.xml"), "\n".join(lines) + "\n")

    # Bundler, Rules, Cfg
    rules = ['<Rules priority="10">']
    counts = {"cfg_dirs": 0, "templates": 0, "plain": 0, "group_files": 0,
              "host_files": 0, "info_xml": 0}
    all_bundles = sorted(set(base) | {b for v in by_os.values() for b in v}
                         | {b for v in by_role.values() for b in v}
                         | {"bundle%02d" % i for i in range(bundles)})
    for bundle in all_bundles:
        entries = ["<Bundle>"]
        directory = "/srv/%s" % bundle
        entries.append('  <Path name="%s"/>' % directory)
        rules.append('  <Path name="%s" type="directory" owner="root" group="root" '
                     'mode="0755"/>' % directory)
        for k in range(CFG_PER_BUNDLE):
            name = "/etc/%s/file%02d.conf" % (bundle, k)
            entries.append('  <Path name="%s"/>' % name)
            cfgdir = os.path.join(target, "Cfg", name.lstrip("/"))
            base_name = os.path.basename(name)
            counts["cfg_dirs"] += 1
            if rnd.random() < 1 / 3:
                write(os.path.join(cfgdir, base_name + ".jinja2"), TEMPLATE.format(n=k))
                counts["templates"] += 1
            else:
                body = "\n".join("option_%d = value %d" % (j, rnd.randrange(1000))
                                 for j in range(12))
                write(os.path.join(cfgdir, base_name),
                      PLAIN.format(name=name, n=k, t=rnd.randrange(10, 90), body=body))
                counts["plain"] += 1
            if rnd.random() < 0.25:
                write(os.path.join(cfgdir, "%s.G50_%s" % (base_name, rnd.choice(OSES))),
                      "os-specific %s\n" % name)
                write(os.path.join(cfgdir, "%s.G10_role%d" % (base_name,
                                                              rnd.randrange(ROLES))),
                      "role-specific %s\n" % name)
                counts["group_files"] += 2
            if rnd.random() < 0.10:
                for host in rnd.sample(hosts, min(len(hosts), 30)):
                    write(os.path.join(cfgdir, "%s.H_%s" % (base_name, host)),
                          "host-specific %s for %s\n" % (name, host))
                    counts["host_files"] += 1
            if rnd.random() < 0.125:
                write(os.path.join(cfgdir, "info.xml"),
                      INFO_GROUPS if rnd.random() < 0.5 else INFO_PLAIN)
                counts["info_xml"] += 1
        for k in range(PACKAGES_PER_BUNDLE):
            package = "%s-pkg%d" % (bundle, k)
            if k == PACKAGES_PER_BUNDLE - 1:
                entries.append('  <Group name="debian"><Package name="%s"/></Group>'
                               % package)
            else:
                entries.append('  <Package name="%s"/>' % package)
            rules.append('  <Package name="%s" type="deb" version="auto"/>' % package)
        service = "%s-daemon" % bundle
        entries.append('  <Service name="%s"/>' % service)
        rules.append('  <Service name="%s" type="systemd" status="on"/>' % service)
        entries.append("</Bundle>")
        write(os.path.join(target, "Bundler", bundle + ".xml"), "\n".join(entries) + "\n")
    rules.append("</Rules>")
    write(os.path.join(target, "Rules", "rules.xml"), "\n".join(rules) + "\n")
    counts.update(clients=clients, bundles=len(all_bundles),
                  bundles_per_client=len(base) + OS_BUNDLES + ROLE_BUNDLES,
                  entries_per_bundle=2 + CFG_PER_BUNDLE + PACKAGES_PER_BUNDLE)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="directory to write (replaced)")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--bundles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    counts = generate(args.target, args.clients, args.bundles, args.seed)
    for key in sorted(counts):
        print("%-20s %s" % (key, counts[key]))


if __name__ == "__main__":
    main()
