"""The real Metadata plugin, recording every ``identify_connection`` call.

Load it as ``plugins = tests.support.recording:Metadata, ...`` (the plugin keeps the
name Metadata). Each call appends one JSON line to ``<repository>/auth-calls.jsonl``:
``{"user", "address": [ip, port], "cert_cn", "client"}``. Tests read it with
``read_calls(repository)`` to see exactly what reached authentication.
"""
import json
import os
import threading

from bcfg2_cherry.plugins.metadata import Metadata as _Metadata

LOG_NAME = "auth-calls.jsonl"
_lock = threading.Lock()


def _common_name(cert):
    for rdn in (cert or {}).get("subject", ()):
        for field, value in rdn:
            if field == "commonName":
                return value
    return None


class Metadata(_Metadata):
    """Metadata that logs what authentication was given and what it decided."""

    def identify_connection(self, cert, user, password, address):
        client = _Metadata.identify_connection(self, cert, user, password, address)
        record = {"user": user, "address": list(address[:2]), "cert_cn": _common_name(cert),
                  "client": client}
        with _lock, open(os.path.join(self.core.setup.repository, LOG_NAME), "a",
                         encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        return client


def read_calls(repository):
    """The recorded calls, oldest first."""
    try:
        with open(os.path.join(str(repository), LOG_NAME), encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
