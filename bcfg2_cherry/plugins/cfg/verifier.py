"""``:test`` files: an external command checks the final content (spec §5.7).

The file (or its ``#!`` interpreter when it is not executable) runs with the
content on stdin; a non-zero exit or 30 s without an answer fails the entry.
"""
import logging
import os
import shlex
import subprocess

from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.plugins.cfg.base import CfgVerifier

logger = logging.getLogger(__name__)

#: seconds a verifier may run
TIMEOUT = 30


class CfgExternalCommandVerifier(CfgVerifier):
    """``:test``, ``:test.G<prio>_<group>``, ``:test.H_<host>``."""

    __basenames__ = (":test",)
    kind = "verifier"

    def __init__(self, name, specific, cfg):
        CfgVerifier.__init__(self, name, specific, cfg)
        self.cmd = None
        self.error = "not read yet"

    def Index(self):
        if os.access(self.name, os.X_OK):
            self.cmd, self.error = [self.name], None
            return
        first = self.data.split(b"\n", 1)[0].strip()
        if first.startswith(b"#!"):
            try:
                self.cmd = shlex.split(first[2:].decode("utf-8", "replace")) + [self.name]
                self.error = None
                return
            except ValueError as err:
                self.error = "bad #! line: %s" % err
        else:
            self.error = "it is not executable and has no #! line"
        self.cmd = None
        logger.error("Cfg: cannot run verifier %s: %s", self.name, self.error)

    def verify_entry(self, entry, metadata, data):
        cmd = self.cmd
        if cmd is None:
            raise PluginExecutionError("Cfg: cannot run verifier %s: %s"
                                       % (self.name, self.error))
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            result = subprocess.run(cmd, input=data, capture_output=True,
                                    timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            reason = "%s ran longer than %d seconds" % (self.name, TIMEOUT)
        except OSError as err:
            reason = "cannot run %s: %s" % (self.name, err)
        else:
            if result.returncode == 0:
                return
            output = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
            reason = "%s exited with status %s%s" % (
                self.name, result.returncode, ": %s" % output if output else "")
        raise PluginExecutionError("Failed to verify %s for %s: %s"
                                   % (entry.get("name"), metadata.hostname, reason))
