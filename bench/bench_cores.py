#!/usr/bin/env python3
"""Network core benchmark: the cores side by side on the generated repository.

For each core (``bcfg2-cherry serve --core NAME`` on 127.0.0.1 with TLS) and each
concurrency level, client processes send requests the way the upstream client does (a
new TLS connection per call, HTTP Basic auth, POST /RPC2), each request for another
client of the generated repository (bench/genrepo.py, plus one probe):

- GetConfig only: configurations per second, p50 and p99 latency;
- full client runs (DeclareVersion, GetProbes, RecvProbeData, GetConfig, RecvStats):
  runs per second.

    python bench/bench_cores.py [--cores builtin,multiprocessing,cherrypy]
        [--concurrency 1,8,64] [--seconds 8] [--clients 1000] [--children N]

The figures depend on the machine (the clients run on it too); compare cores within
one run.
"""
import argparse
import base64
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import genrepo  # noqa: E402

PASSWORD = "bench"
VERSION = "1.4.0pre2"
PLUGINS = "Metadata, Bundler, Rules, Cfg, Probes"
PROBE = "#!/bin/sh\n. /etc/os-release 2>/dev/null; echo \"group:$ID\"\n"
STATS = ('<upload-statistics><Statistics total="250" good="250" state="clean" '
         'version="2.0" revision="-1"><Flags><Flag name="dry_run" value="True"/>'
         '</Flags><Good/><Bad/><Modified/><Extra/><OpStamps start="0" '
         'finished="1"/></Statistics></upload-statistics>')


# ---------------------------------------------------------------- set-up

def make_repository(workdir, clients, repo=None):
    """The generated repository (with one probe), or a copy of ``repo``."""
    target = os.path.join(workdir, "repo")
    if repo:
        shutil.copytree(repo, target)
    else:
        genrepo.generate(target, clients)
    os.makedirs(os.path.join(target, "Probes"), exist_ok=True)
    with open(os.path.join(target, "Probes", "os"), "w") as fh:
        fh.write(PROBE)
    # steady state: the clients have run before, so DeclareVersion changes nothing
    clients_xml = os.path.join(target, "Metadata", "clients.xml")
    with open(clients_xml) as fh:
        text = fh.read()
    with open(clients_xml, "w") as fh:
        fh.write(text.replace("<Client name=", '<Client version="%s" name=' % VERSION))
    return target


def write_config(workdir, repo, tls, port, children):
    path = os.path.join(workdir, "bcfg2-%d.conf" % port)
    with open(path, "w") as fh:
        fh.write("[server]\nrepository = %s\nplugins = %s\nfilemonitor = pseudo\n"
                 "children = %d\n\n[components]\nbcfg2 = https://127.0.0.1:%d\n\n"
                 "[communication]\nprotocol = xmlrpc/ssl\npassword = %s\n"
                 "certificate = %s\nkey = %s\nca = %s\n\n[logging]\nsyslog = false\n"
                 % (repo, PLUGINS, children, port, PASSWORD, tls["certificate"],
                    tls["key"], tls["ca"]))
    return path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_context(ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=ca)
    return ctx


# ---------------------------------------------------------------- one request

def call(port, ctx, user, method, *params, timeout=120):
    """One upstream-style call on a new TLS connection; returns (seconds, body)."""
    body = xmlrpc.client.dumps(params, method, allow_none=True).encode("utf-8")
    token = base64.b64encode(("%s:%s" % (user, PASSWORD)).encode()).decode()
    head = ("POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Basic %s\r\n"
            "Accept-Encoding: gzip\r\nContent-Type: text/xml\r\n"
            "User-Agent: Python-xmlrpc/3.11\r\nContent-Length: %d\r\n\r\n"
            % (port, token, len(body))).encode("latin-1")
    start = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client
        sock = ctx.wrap_socket(sock)
        sock.sendall(head + body)
        status, data = read_response(sock)
    finally:
        sock.close()
    elapsed = time.perf_counter() - start
    if status != 200 or b"<fault>" in data[:200]:
        raise RuntimeError("%s for %s: HTTP %s %r" % (method, user, status, data[:300]))
    return elapsed, data


def read_response(sock):
    """``(status, body)`` of an HTTP response with a Content-Length (cheaply: the
    load generator shares the CPUs with the server)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the response headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    parts = [body]
    have = len(body)
    while length is None or have < length:
        chunk = sock.recv(max(65536, (length or 0) - have))
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return status, b"".join(parts)


def full_run(port, ctx, user, os_name):
    call(port, ctx, user, "DeclareVersion", VERSION)
    call(port, ctx, user, "GetProbes")
    call(port, ctx, user, "RecvProbeData",
         '<ProbeData><probe-data name="os" source="Probes">group:%s\nBench OS\n'
         '</probe-data></ProbeData>' % os_name)
    elapsed, _ = call(port, ctx, user, "GetConfig")
    call(port, ctx, user, "RecvStats", STATS)
    return elapsed


# ---------------------------------------------------------------- load generation

def _worker(args):
    """One client process: ``threads`` threads loop over their clients until the
    deadline; returns (latencies of the operations that ended in the measured window,
    errors, operations done in all)."""
    import threading
    port, ca, mode, threads, offset, stride, start_at, warm_until, stop_at, nclients = args
    ctx = client_context(ca)
    latencies, errors = [], []
    done_total = [0]
    lock = threading.Lock()

    def loop(index):
        i = offset + index * stride
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < stop_at:
            number = (i * 7919) % nclients
            user = genrepo.client_name(number)
            try:
                if mode == "getconfig":
                    elapsed, _ = call(port, ctx, user, "GetConfig")
                else:
                    elapsed = full_run(port, ctx, user,
                                       genrepo.OSES[(number // genrepo.ROLES) % 2])
                done = time.time()
                with lock:
                    done_total[0] += 1
                    if warm_until <= done <= stop_at:
                        latencies.append(elapsed)
            except Exception as err:  # pylint: disable=broad-except
                with lock:
                    errors.append(str(err)[:200])
            i += threads * stride

    pool = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies, errors, done_total[0]


def measure(port, ca, mode, concurrency, seconds, warmup, nclients, processes):
    processes = max(1, min(processes, concurrency))
    per = [concurrency // processes + (1 if n < concurrency % processes else 0)
           for n in range(processes)]
    start_at = time.time() + 0.5
    warm_until = start_at + warmup
    stop_at = warm_until + seconds
    jobs = [(port, ca, mode, per[n], n, processes, start_at, warm_until, stop_at,
             nclients) for n in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        results = pool.map(_worker, jobs)
    latencies = sorted(x for lat, _, _ in results for x in lat)
    errors = [e for _, errs, _ in results for e in errs]
    return latencies, errors, sum(n for _, _, n in results)


def percentile(ordered, pct):
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100.0 * len(ordered)) - 1))
    return ordered[index]


# ---------------------------------------------------------------- servers

def start(core, conf, port, ca, logfile, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get(
        "PYTHONPATH", "").split(os.pathsep) if p])
    log = open(logfile, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bcfg2_cherry", "serve", "--core", core,
                             "-C", conf], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT, start_new_session=True)
    log.close()
    ctx = client_context(ca)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(logfile, errors="replace") as fh:
                raise RuntimeError("%s exited with %s:\n%s" % (core, proc.returncode,
                                                               fh.read()[-3000:]))
        try:
            call(port, ctx, genrepo.client_name(0), "GetConfig", timeout=10)
            return proc
        except (OSError, RuntimeError):
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("%s did not start within %ss" % (core, timeout))


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# ---------------------------------------------------------------- main

def session_cpu(sid):
    """CPU seconds used so far by the server's processes (its session: the server,
    and for the multiprocessing core its fork server and children)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def best_of(repeat, port, ca, mode, level, args, sid):
    """The best of ``repeat`` measurements (the machine may be busy meanwhile):
    ``{"per_s", "p50_ms", "p99_ms", "cpu_ms", "errors"}``."""
    best = None
    for _ in range(repeat):
        cpu = session_cpu(sid)
        lat, errors, total = measure(port, ca, mode, level, args.seconds, args.warmup,
                                     args.clients, args.client_processes)
        cpu = session_cpu(sid) - cpu
        row = {"per_s": len(lat) / args.seconds, "p50_ms": percentile(lat, 50) * 1000,
               "p99_ms": percentile(lat, 99) * 1000,
               "cpu_ms": cpu / total * 1000 if total else float("nan"),
               "errors": errors}
        if best is None or row["per_s"] > best["per_s"]:
            best = row
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", default="builtin,multiprocessing,cherrypy")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="measured seconds per core, level and workload")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each point this many times and keep the best")
    parser.add_argument("--clients", type=int, default=1000,
                        help="clients in the generated repository")
    parser.add_argument("--repo", help="use (a copy of) this repository instead")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2,
                        help="children of the multiprocessing core")
    parser.add_argument("--client-processes", type=int, default=2,
                        help="processes generating the load")
    parser.add_argument("--no-runs", action="store_true", help="GetConfig only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    from bcfg2_cherry.server.tls import ensure_demo_certificates
    workdir = tempfile.mkdtemp(prefix="bcfg2-bench-cores-")
    levels = [int(x) for x in args.concurrency.split(",")]
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    tls = ensure_demo_certificates(workdir)
    source = make_repository(workdir, args.clients, args.repo)
    print("repository: %d generated clients; %d CPUs; %d children; %ss per measurement, "
          "best of %d" % (args.clients, os.cpu_count() or 0, args.children, args.seconds,
                          args.repeat))
    results = {}
    try:
        for core in cores:
            repo = os.path.join(workdir, "repo-" + core)
            shutil.copytree(source, repo)
            port = free_port()
            conf = write_config(workdir, repo, tls, port, args.children)
            proc = start(core, conf, port, tls["ca"], os.path.join(workdir, core + ".log"))
            try:
                for level in levels:
                    row = best_of(args.repeat, port, tls["ca"], "getconfig", level, args,
                                  proc.pid)
                    if not args.no_runs:
                        runs = best_of(args.repeat, port, tls["ca"], "run", level, args,
                                       proc.pid)
                        row["runs_per_s"] = runs["per_s"]
                        row["run_cpu_ms"] = runs["cpu_ms"]
                        row["errors"] = row["errors"] + runs["errors"]
                    results[(core, level)] = row
                    errors = row["errors"]
                    print("%-16s %3d clients: GetConfig %6.1f/s p50 %6.1f ms p99 %6.1f ms "
                          "(server CPU %.1f ms each); runs %s/s%s" % (
                              core, level, row["per_s"], row["p50_ms"], row["p99_ms"],
                              row["cpu_ms"], "%.1f" % row["runs_per_s"]
                              if "runs_per_s" in row else "-",
                              "  ERRORS %d (%s)" % (len(errors), errors[0])
                              if errors else ""), flush=True)
            finally:
                stop(proc)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print("%-8s %-16s %12s %8s %8s %14s %8s" % (
        "clients", "core", "GetConfig/s", "p50 ms", "p99 ms", "CPU ms/config", "runs/s"))
    for level in levels:
        for core in cores:
            row = results.get((core, level))
            if row is None:
                continue
            print("%-8d %-16s %12.1f %8.1f %8.1f %14.1f %8s" % (
                level, core, row["per_s"], row["p50_ms"], row["p99_ms"], row["cpu_ms"],
                "%.1f" % row["runs_per_s"] if "runs_per_s" in row else "-"))
    if "builtin" in cores:
        print()
        for other in cores:
            if other == "builtin":
                continue
            for level in levels:
                base = results.get(("builtin", level))
                row = results.get((other, level))
                if base and row and base["per_s"]:
                    print("%s / builtin at %d clients: GetConfig %.2fx%s" % (
                        other, level, row["per_s"] / base["per_s"],
                        ", runs %.2fx" % (row["runs_per_s"] / base["runs_per_s"])
                        if base.get("runs_per_s") and "runs_per_s" in row else ""))


if __name__ == "__main__":
    main()
