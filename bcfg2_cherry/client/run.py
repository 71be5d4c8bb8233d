"""A client run that asks the server everything a real client asks and changes nothing.

The calls, in upstream's order (spec/protocol.md §6): AssertProfile (only with a
profile), DeclareVersion, GetProbes, RecvProbeData (only when there were probes),
GetDecisionList (only in whitelist/blacklist mode), GetConfig, and RecvStats only when a
report is asked for. Probes run here, with their interpreter and a timeout, because the
server's answer depends on them; nothing else is executed and no entry is applied.

The statistics document of a report (§6.4) says ``dry_run="True"``. Nothing on this
machine is inspected, so it describes what the server delivered: entries the server
bound are listed as Good, entries it could not bind (``failure=``) as Bad.
"""
import copy
import logging
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time

import lxml.etree

from bcfg2_cherry.client.proxy import ProxyError
from bcfg2_cherry.xml import XMLError, parse_client_xml

logger = logging.getLogger(__name__)

#: The client version declared to the server: the upstream release whose protocol this
#: client speaks, so that templates which branch on ``metadata.version_info`` see a 1.4
#: client (upstream's own client declares its version the same way).
PROTOCOL_VERSION = "1.4.0pre2"
#: Seconds a probe may run before it is killed (upstream: no limit).
DEFAULT_PROBE_TIMEOUT = 120.0
#: Largest Configuration document accepted, in bytes.
MAX_CONFIGURATION = 512 * 1024 * 1024
DECISION_MODES = ("whitelist", "blacklist")

# characters XML 1.0 cannot carry; a probe printing them would make the upload fail
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class RunError(Exception):
    """The run stopped; ``str()`` is one line (e.g. "Failed to declare version: ...")."""


class ProbeResult:
    """What one probe did: ``name``, ``source``, ``returncode``, ``stdout``, ``stderr``,
    ``error`` (None when it ran and exited 0)."""

    def __init__(self, name, source, returncode=None, stdout="", stderr="", error=None):
        self.name = name
        self.source = source
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.error = error

    @property
    def ok(self):
        return self.error is None

    def __repr__(self):
        return "<ProbeResult %s rc=%s error=%s>" % (self.name, self.returncode, self.error)


class RunResult:
    """The outcome of a run: the Configuration (``config`` element, ``text`` as the
    server sent it), the decision list, the probes, the uploaded statistics (or None),
    the phase timestamps and ``report_error`` (a failed RecvStats, as a one-line str)."""

    def __init__(self):
        self.config = None
        self.text = None
        self.decisions = None
        self.probes = []
        self.statistics = None
        self.times = {}
        self.report_error = None


def run_probe(probe, timeout=DEFAULT_PROBE_TIMEOUT, encoding="UTF-8"):
    """Run one ``<probe>`` element from GetProbes; return a ProbeResult.

    The script is written to a private temporary file and started as
    ``INTERPRETER... FILE`` (the interpreter attribute may carry arguments, e.g.
    ``/usr/bin/env python3``), in its own process group, killed after ``timeout`` s.
    """
    name = probe.get("name", "")
    result = ProbeResult(name, probe.get("source", ""))
    interpreter = probe.get("interpreter") or "/bin/sh"
    try:
        command = shlex.split(interpreter)
    except ValueError as err:
        result.error = "bad interpreter %r: %s" % (interpreter, err)
        return result
    with tempfile.TemporaryDirectory(prefix="bcfg2-cherry-probe-") as tmp:
        script = os.path.join(tmp, re.sub(r"[^\w.-]", "_", name) or "probe")
        with open(script, "w", encoding=encoding, errors="replace") as fh:
            fh.write(probe.text or "")
        os.chmod(script, 0o700)
        try:
            proc = subprocess.Popen(command + [script], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as err:
            result.error = "cannot start %s: %s" % (interpreter, err.strerror or err)
            return result
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            result.error = "timed out after %s s" % timeout
        result.returncode = proc.returncode
    result.stdout = out.decode("utf-8", "replace")
    result.stderr = err.decode("utf-8", "replace")
    if result.error is None and proc.returncode != 0:
        result.error = "exit status %s" % proc.returncode
    return result


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def probe_data_document(results):
    """The ProbeData document (str) RecvProbeData takes, serialized as upstream does
    (no declaration, non-ASCII as character references)."""
    root = lxml.etree.Element("ProbeData")
    for res in results:
        node = lxml.etree.SubElement(root, "probe-data", name=res.name,
                                     source=res.source)
        text = res.stdout
        if _NOT_XML.search(text):
            logger.warning("probe %s printed characters XML cannot carry; they are "
                           "dropped", res.name)
            text = _NOT_XML.sub("", text)
        if text:
            node.text = text
    return lxml.etree.tostring(root).decode("ascii")


def entries(config):
    """The entries of a Configuration: the elements inside its structures (a
    ``<Bundle name=>`` inside a bundle is a reference for the client, not an entry)."""
    return [entry for struct in config if isinstance(struct.tag, str)
            for entry in struct if isinstance(entry.tag, str) and entry.tag != "Bundle"]


def statistics_document(config, times, only_important=False):
    """The ``upload-statistics`` element of a dry run of ``config`` (see module doc)."""
    found = entries(config)
    if only_important:
        found = [e for e in found if e.get("important", "false").lower() == "true"]
    good = [e for e in found if e.get("failure") is None]
    bad = [e for e in found if e.get("failure") is not None]
    root = lxml.etree.Element("upload-statistics")
    stats = lxml.etree.SubElement(root, "Statistics", total=str(len(found)),
                                  version="2.0", revision=config.get("revision", "-1"))
    flags = lxml.etree.SubElement(stats, "Flags")
    lxml.etree.SubElement(flags, "Flag", name="dry_run", value="True")
    lxml.etree.SubElement(flags, "Flag", name="only_important",
                          value=str(bool(only_important)))
    stats.set("good", str(len(good)))
    stats.set("state", "dirty" if bad else "clean")
    for tag, items in (("Modified", []), ("Extra", []), ("Good", good), ("Bad", bad)):
        container = lxml.etree.SubElement(stats, tag)
        for entry in items:
            item = copy.deepcopy(entry)
            item.text = None
            item.tail = None
            item.set("qtext", "")
            container.append(item)
    stamps = lxml.etree.SubElement(stats, "OpStamps")
    for phase, stamp in times.items():
        stamps.set(phase, str(float(stamp)))
    return root


class ClientRun:
    """One run against ``proxy`` (a ``bcfg2_cherry.client.proxy.Proxy``).

    ``profile``: AssertProfile first; ``decision``: ``whitelist``/``blacklist`` to fetch
    the decision list; ``run_probes`` False skips probes (and RecvProbeData);
    ``report`` True uploads the dry-run statistics.
    """

    def __init__(self, proxy, profile=None, decision=None, run_probes=True,
                 probe_timeout=DEFAULT_PROBE_TIMEOUT, exit_on_probe_failure=True,
                 report=False, version=PROTOCOL_VERSION, encoding="UTF-8"):
        if decision in (None, "", "none"):
            decision = None
        elif decision not in DECISION_MODES:
            raise ValueError("decision mode must be whitelist, blacklist or none, not %r"
                             % decision)
        self.proxy = proxy
        self.profile = profile
        self.decision = decision
        self.run_probes = run_probes
        self.probe_timeout = probe_timeout
        self.exit_on_probe_failure = exit_on_probe_failure
        self.report = report
        self.version = version
        self.encoding = encoding
        self.result = RunResult()
        self.result.times["initialization"] = time.time()

    def _call(self, what, method, *args):
        try:
            return self.proxy.call(method, *args)
        except ProxyError as err:
            raise RunError("Failed to %s: %s" % (what, err)) from err

    def _stamp(self, phase):
        self.result.times[phase] = time.time()

    def run(self):
        """Do the run; return the RunResult or raise RunError."""
        res = self.result
        self._stamp("start")
        if self.profile:
            self._call("set client profile", "AssertProfile", self.profile)
        self._call("declare version", "DeclareVersion", self.version)
        self._probes()
        if self.decision:
            res.decisions = self._call("get decision list", "GetDecisionList",
                                       self.decision)
            logger.info("decision list (%s): %s", self.decision, res.decisions)
        text = self._call("download configuration", "GetConfig")
        self._stamp("config_download")
        if not isinstance(text, str):
            raise RunError("Failed to download configuration: the server sent a %s, "
                           "not a document" % type(text).__name__)
        try:
            config = parse_client_xml(text, max_size=MAX_CONFIGURATION)
        except XMLError as err:
            raise RunError("The configuration could not be parsed: %s" % err) from None
        self._stamp("config_parse")
        res.text, res.config = text, config
        if config.tag == "error":
            raise RunError("Server error: %s" % (config.get("type") or config.text
                                                 or "unknown"))
        failed = [e for e in entries(config) if e.get("failure") is not None]
        for entry in failed:
            logger.warning("%s:%s was not bound: %s", entry.tag, entry.get("name"),
                           entry.get("failure"))
        self._stamp("finished")
        if self.report:
            res.statistics = statistics_document(config, dict(res.times))
            try:
                self.proxy.call("RecvStats", lxml.etree.tostring(
                    res.statistics).decode("ascii"))
            except ProxyError as err:
                res.report_error = "Failed to upload statistics: %s" % err
        return res

    def _probes(self):
        text = self._call("download probes", "GetProbes")
        self._stamp("probe_download")
        try:
            probes = parse_client_xml(text if isinstance(text, str) else "")
        except XMLError as err:
            raise RunError("Server returned invalid probe requests: %s" % err) from None
        elements = probes.findall(".//probe")
        if not self.run_probes:
            if elements:
                logger.warning("not running %d probe(s): %s", len(elements),
                               ", ".join(p.get("name", "") for p in elements))
            return
        for probe in elements:
            logger.info("running probe %s", probe.get("name"))
            result = run_probe(probe, self.probe_timeout, self.encoding)
            self.result.probes.append(result)
            if result.stderr:
                logger.warning("probe %s wrote to stderr: %s", result.name,
                               result.stderr.strip())
            if not result.ok:
                message = "Failed to execute probe %s: %s" % (result.name, result.error)
                if self.exit_on_probe_failure:
                    raise RunError(message)
                logger.error("%s", message)
        if elements:
            self._call("upload probe data", "RecvProbeData",
                       probe_data_document(self.result.probes))
        self._stamp("probe_upload")
