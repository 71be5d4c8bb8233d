#!/usr/bin/env python3
"""Full client runs over HTTPS against a real ``bcfg2-cherry serve``.

Generates a repository with bench/genrepo.py (unless ``--repo`` names one), starts the
server (``--core``, default cherrypy) on 127.0.0.1 with a generated certificate, and
for each concurrency level (default 1, 8, 64) runs that many clients at once, each
doing complete client runs the way the upstream client does (a new TLS connection per
call: DeclareVersion, GetProbes, RecvProbeData when there are probes, GetConfig,
RecvStats), each as a different client of the repository. Prints runs/s, GetConfig and
run latency (p50/p99/max) and the server's RSS; then GetConfig alone at 8 clients
against the in-process BuildConfiguration time per configuration (the target: within
1.25x).

    python bench/bench_https.py [--clients 1000] [--levels 1,8,64] [--seconds 10]
                                [--repeat 1]
"""
import argparse
import concurrent.futures
import logging
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import genrepo  # noqa: E402

PASSWORD = "bench-password"
PLUGINS = "Metadata, Bundler, Rules, Cfg, Probes"


def percentile(values, pct):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100.0 * len(ordered)) - 1))
    return ordered[index]


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid):
    """User + system CPU seconds the process has used so far."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_conf(workdir, repo, port, tls, extra=""):
    conf = os.path.join(workdir, "bcfg2.conf")
    with open(conf, "w") as fh:
        fh.write("[server]\nrepository = %s\nplugins = %s\nfilemonitor = pseudo\n%s\n"
                 "[components]\nbcfg2 = https://127.0.0.1:%d\n"
                 "[communication]\nprotocol = xmlrpc/ssl\npassword = %s\n"
                 "certificate = %s\nkey = %s\nca = %s\n"
                 "[logging]\nsyslog = false\n"
                 % (repo, PLUGINS, extra, port, PASSWORD, tls["certificate"],
                    tls["key"], tls["ca"]))
    return conf


def start_server(core, conf, port, ca, logpath):
    from bcfg2_cherry.client import Proxy
    env = dict(os.environ, PYTHONPATH=ROOT)
    log = open(logpath, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bcfg2_cherry", "serve", "--core",
                             core, "-C", conf], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=ROOT)
    log.close()
    proxy = Proxy("https://127.0.0.1:%d" % port, user="root", password="x", ca=ca,
                  retries=1, timeout=10)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited:\n" + open(logpath).read()[-3000:])
        try:
            proxy.call("DeclareVersion", "x")
        except Exception as err:  # pylint: disable=broad-except
            # 401 (wrong password) means it serves; 503 and refusals mean not yet
            if "401" in str(err):
                return proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server not ready after 300 s")


# -- client side, in worker processes ------------------------------------------------

def _worker(args):
    """Run ``threads`` clients for ``seconds``; return their timings."""
    url, ca, names, threads, seconds, mode, start_at = args
    logging.disable(logging.CRITICAL)
    from bcfg2_cherry.client import Proxy
    from bcfg2_cherry.client.run import ClientRun

    class TimedProxy(Proxy):
        def call(self, method, *params):
            start = time.perf_counter()
            try:
                return Proxy.call(self, method, *params)
            finally:
                self.times.append((method, time.perf_counter() - start))

    results = {"runs": [], "calls": [], "errors": []}
    lock = threading.Lock()
    while time.time() < start_at:
        time.sleep(0.005)
    stop = time.monotonic() + seconds

    def client(index):
        i = index
        while time.monotonic() < stop:
            name = names[i % len(names)]
            i += threads
            proxy = TimedProxy(url, user=name, password=PASSWORD, ca=ca, retries=1,
                               timeout=120)
            proxy.times = []
            start = time.perf_counter()
            try:
                if mode == "getconfig":
                    proxy.call("GetConfig")
                else:
                    ClientRun(proxy, report=True).run()
            except Exception as err:  # pylint: disable=broad-except
                with lock:
                    results["errors"].append(str(err)[:200])
                continue
            with lock:
                results["runs"].append(time.perf_counter() - start)
                results["calls"].extend(proxy.times)

    pool = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


def measure(url, ca, names, clients, seconds, mode, server_pid):
    procs = min(clients, max(1, os.cpu_count() or 1) * 2, 8)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    start_at = time.time() + 1.0
    jobs = []
    offset = 0
    for threads in per:
        # each process gets its own slice of client names
        jobs.append((url, ca, names[offset::procs] or names, threads, seconds, mode,
                     start_at))
        offset += 1
    peak = [0.0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(server_pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    cpu_before = cpu_seconds(server_pid)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(procs, mp_context=ctx) as pool:
        parts = list(pool.map(_worker, jobs))
    done.set()
    sampler.join()
    cpu = cpu_seconds(server_pid) - cpu_before
    runs = [t for p in parts for t in p["runs"]]
    calls = [c for p in parts for c in p["calls"]]
    errors = [e for p in parts for e in p["errors"]]
    getconfig = [t for m, t in calls if m == "GetConfig"]
    return {"runs": len(runs), "rate": len(runs) / seconds, "run": runs,
            "getconfig": getconfig, "errors": errors, "rss": peak[0],
            "calls": len(calls), "cpu": cpu}


def in_process_build(repo, workdir, names, builds):
    """Seconds per BuildConfiguration in-process (LocalCore, same plugins), and per
    GetConfig through the whole shared request path (dispatch.handle: authentication,
    parsing, ACLs, GetConfig, encoding), each call from a new client port as over HTTPS.
    """
    import xmlrpc.client
    from bcfg2_cherry.options import Settings
    from bcfg2_cherry.server import dispatch
    from bcfg2_cherry.server.core import NetworkCore
    from bcfg2_cherry.server.local_core import LocalCore

    class InProcessCore(LocalCore, NetworkCore):
        name = "InProcessCore"

    conf = os.path.join(workdir, "inproc.conf")
    with open(conf, "w") as fh:
        fh.write("[server]\nrepository = %s\nplugins = %s\nfilemonitor = pseudo\n"
                 "[communication]\npassword = %s\n" % (repo, PLUGINS, PASSWORD))
    core = InProcessCore(Settings(conf)).load()
    body = xmlrpc.client.dumps((), "GetConfig").encode("utf-8")
    try:
        for name in names[:10]:
            core.BuildConfiguration(name)
        times, handled = [], []
        for i in range(builds):
            start = time.perf_counter()
            core.BuildConfiguration(names[i % len(names)])
            times.append(time.perf_counter() - start)
        for i in range(builds):
            start = time.perf_counter()
            dispatch.handle(core, body, ("127.0.0.1", 1024 + i),
                            user=names[i % len(names)], password=PASSWORD)
            handled.append(time.perf_counter() - start)
        return times, handled
    finally:
        core.shutdown()


def fmt_ms(values):
    if not values:
        return "-"
    return "p50 %6.1f  p99 %6.1f  max %6.1f ms" % (
        1000 * percentile(values, 50), 1000 * percentile(values, 99),
        1000 * max(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="an existing repository (else one is generated)")
    parser.add_argument("--clients", type=int, default=1000,
                        help="clients in the generated repository")
    parser.add_argument("--bundles", type=int, default=50)
    parser.add_argument("--core", default="cherrypy")
    parser.add_argument("--levels", default="1,8,64",
                        help="concurrent clients, comma-separated ('' for none: "
                        "GetConfig alone)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="times to measure GetConfig alone at 8 clients")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="duration of each level")
    parser.add_argument("--builds", type=int, default=200,
                        help="in-process builds for the baseline")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from bcfg2_cherry.server.tls import ensure_demo_certificates
    workdir = tempfile.mkdtemp(prefix="bcfg2-bench-https-")
    repo = args.repo
    if not repo:
        repo = os.path.join(workdir, "repo")
        start = time.perf_counter()
        genrepo.generate(repo, clients=args.clients, bundles=args.bundles)
        # one probe, so that runs include RecvProbeData as real ones do
        os.makedirs(os.path.join(repo, "Probes"), exist_ok=True)
        with open(os.path.join(repo, "Probes", "uptime"), "w") as fh:
            fh.write("#!/bin/sh\necho up\n")
        print("generated %d clients, %d bundles in %s (%.1f s)"
              % (args.clients, args.bundles, repo, time.perf_counter() - start))
    names = [genrepo.client_name(i) for i in range(args.clients)]
    tls = ensure_demo_certificates(workdir)
    port = free_port()
    conf = write_conf(workdir, repo, port, tls)
    server = start_server(args.core, conf, port, tls["ca"],
                          os.path.join(workdir, "server.log"))
    url = "https://127.0.0.1:%d" % port
    print("server: core %s, pid %d, %s, RSS after start %.0f MB"
          % (args.core, server.pid, url, rss_mb(server.pid)))
    try:
        levels = [int(x) for x in args.levels.split(",") if x.strip()]
        if levels:
            print("\nfull client runs (new TLS connection per call):")
        for level in levels:
            res = measure(url, tls["ca"], names, level, args.seconds, "run", server.pid)
            print("  %3d clients: %6.1f runs/s  GetConfig %s  run %s  RSS %.0f MB%s"
                  % (level, res["rate"], fmt_ms(res["getconfig"]), fmt_ms(res["run"]),
                     res["rss"], "  ERRORS %d: %s" % (len(res["errors"]),
                                                      res["errors"][0])
                     if res["errors"] else ""))
        rounds = []
        for _ in range(max(1, args.repeat)):
            res = measure(url, tls["ca"], names, 8, args.seconds, "getconfig",
                          server.pid)
            if res["getconfig"]:
                rounds.append(res)
        inproc, handled = in_process_build(repo, workdir, names, args.builds)
        mean_inproc = statistics.mean(inproc)
        print("\nin-process BuildConfiguration: mean %.1f ms (%s)"
              % (1000 * mean_inproc, fmt_ms(inproc)))
        print("in-process GetConfig request (dispatch.handle): mean %.1f ms = %.2fx (%s)"
              % (1000 * statistics.mean(handled), statistics.mean(handled) / mean_inproc,
                 fmt_ms(handled)))
        for res in rounds:
            served = len(res["getconfig"])
            per_config = args.seconds / served
            print("\nGetConfig only, 8 clients: %d configurations in %.0f s = %.1f ms each "
                  "(%s)%s" % (served, args.seconds, 1000 * per_config,
                              fmt_ms(res["getconfig"]),
                              "  ERRORS %d" % len(res["errors"]) if res["errors"] else ""))
            print("ratio HTTPS/in-process: %.2f wall time per configuration (target <= "
                  "1.25; clients share this machine's CPUs)" % (per_config / mean_inproc))
            print("server CPU per configuration: %.1f ms = %.2fx in-process build"
                  % (1000 * res["cpu"] / served, res["cpu"] / served / mean_inproc))
        if len(rounds) > 1:
            cpu = sorted(r["cpu"] / len(r["getconfig"]) / mean_inproc for r in rounds)
            wall = sorted(args.seconds / len(r["getconfig"]) / mean_inproc for r in rounds)
            print("\nover %d rounds: server CPU %.2f-%.2fx (median %.2f), wall %.2f-%.2fx "
                  "(median %.2f) of in-process build" % (
                      len(rounds), cpu[0], cpu[-1], statistics.median(cpu), wall[0],
                      wall[-1], statistics.median(wall)))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        if args.keep:
            print("kept", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
