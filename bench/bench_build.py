#!/usr/bin/env python3
"""In-process BuildConfiguration benchmark.

Generates a repository with bench/genrepo.py (unless ``--repo`` names one), loads it
with a LocalCore (plugins Metadata, Bundler, Rules, Cfg) and builds the configuration
of many different clients, one after the other. Prints builds per second, p50/p99
per build, entries per configuration, load time and memory (RSS).

    python bench/bench_build.py [--clients 1000] [--builds 2000] [--profile]
"""
import argparse
import gc
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import genrepo  # noqa: E402  (bench/ is put on sys.path above)

from bcfg2_cherry.options import Settings  # noqa: E402
from bcfg2_cherry.server.local_core import LocalCore  # noqa: E402

PLUGINS = ("Metadata", "Bundler", "Rules", "Cfg")


def rss_mb():
    """Current resident set size in MB (Linux), else the peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_core(repo, workdir, plugins, cache):
    conf = os.path.join(workdir, "bcfg2.conf")
    with open(conf, "w") as fh:
        fh.write("[server]\nrepository = %s\nplugins = %s\nfilemonitor = pseudo\n"
                 "[caching]\nclient_metadata = %s\n" % (repo, ", ".join(plugins), cache))
    return LocalCore(Settings(conf)).load()


def percentile(values, pct):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100.0 * len(ordered)) - 1))
    return ordered[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="an existing repository (else one is generated)")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--bundles", type=int, default=50)
    parser.add_argument("--builds", type=int, default=2000,
                        help="configurations to build (clients are cycled)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--cache", default="off",
                        help="[caching] client_metadata (off, cautious, ...)")
    parser.add_argument("--plugins", default=",".join(PLUGINS))
    parser.add_argument("--profile", action="store_true",
                        help="run the timed builds under cProfile and print hot spots")
    parser.add_argument("--profile-lines", type=int, default=30)
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated repository (its path is printed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    workdir = tempfile.mkdtemp(prefix="bcfg2-bench-")
    repo = args.repo
    if repo is None:
        repo = os.path.join(workdir, "repo")
        start = time.perf_counter()
        counts = genrepo.generate(repo, args.clients, args.bundles)
        print("generated %s in %.1f s: %s" % (repo, time.perf_counter() - start,
                                              ", ".join("%s=%s" % kv
                                                        for kv in sorted(counts.items()))))
    rss_before = rss_mb()
    start = time.perf_counter()
    core = load_core(repo, workdir, [p.strip() for p in args.plugins.split(",")],
                     args.cache)
    load_time = time.perf_counter() - start
    missing = [p for p in args.plugins.split(",") if p.strip() not in core.plugins]
    if missing:
        print("WARNING: plugins not loaded: %s" % ", ".join(missing))
    rss_loaded = rss_mb()
    clients = sorted(core.metadata.clients) if hasattr(core.metadata, "clients") else \
        [genrepo.client_name(i) for i in range(args.clients)]
    if not isinstance(clients, list):
        clients = list(clients)
    print("loaded %d plugins, %d clients in %.2f s; RSS %.0f MB (+%.0f MB)" % (
        len(core.plugins), len(clients), load_time, rss_loaded, rss_loaded - rss_before))

    for i in range(args.warmup):
        core.BuildConfiguration(clients[i % len(clients)])

    # a fixed pseudo-random order, so consecutive builds are different clients
    order = [clients[(i * 7919) % len(clients)] for i in range(args.builds)]
    times = []
    entries = []
    failures = 0
    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
    gc.collect()
    wall = time.perf_counter()
    for client in order:
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        config = core.BuildConfiguration(client)
        if profiler is not None:
            profiler.disable()
        times.append(time.perf_counter() - t0)
        count = 0
        for structure in config:
            for entry in structure:
                count += 1
                if entry.get("failure") is not None:
                    failures += 1
        entries.append(count)
    wall = time.perf_counter() - wall
    rss_after = rss_mb()
    core.shutdown()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)

    ms = [t * 1000 for t in times]
    print("builds:            %d (%d different clients)" % (len(times), len(set(order))))
    print("builds per second: %.0f" % (len(times) / sum(times)))
    print("per build:         mean %.2f ms, p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (
        statistics.mean(ms), percentile(ms, 50), percentile(ms, 99), max(ms)))
    print("entries per build: mean %.0f (min %d, max %d); failed entries %d" % (
        statistics.mean(entries), min(entries), max(entries), failures))
    print("per entry:         %.1f us" % (sum(times) / sum(entries) * 1e6))
    print("wall time:         %.2f s" % wall)
    print("RSS:               %.0f MB after load, %.0f MB after the builds" % (
        rss_loaded, rss_after))
    if profiler is not None:
        import pstats
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.profile_lines)
        stats.sort_stats("cumulative").print_stats(args.profile_lines)


if __name__ == "__main__":
    main()
