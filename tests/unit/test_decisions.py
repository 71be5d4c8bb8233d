"""Decisions through the Core: GetDecisionList from whitelist.xml and blacklist.xml."""
import os

import pytest

from bcfg2_cherry.plugin.exceptions import PluginExecutionError
from bcfg2_cherry.server.core import ClientAddress
from bcfg2_cherry.server.errors import Fault
from tests.unit import fakeplugins as fp
from tests.unit.test_rules import make_core, refresh, write


@pytest.fixture(autouse=True)
def clients(monkeypatch):
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        "web1.example.com": ("10.0.0.1", ["debian"], []),
        "db1.example.com": ("10.0.0.2", ["redhat"], []),
    })


def decisions(core, host, mode):
    return core.GetDecisionList(ClientAddress(("10.0.0.9", 1), host), mode)


def test_lists_with_conditionals(tmp_path):
    ddir = tmp_path / "repo" / "Decisions"
    write(ddir / "whitelist.xml", '<Decisions><Decision type="Service" name="*"/>'
          '<Group name="debian"><Decision type="Path" name="/etc/apt/apt.conf"/>'
          '</Group><Client name="db1.example.com" negate="true">'
          '<Decision type="Package" name="vim"/></Client><!-- c --></Decisions>')
    write(ddir / "blacklist.xml", '<Decisions><Group name="redhat">'
          '<Decision type="Path" name="/etc/yum.conf"/></Group></Decisions>')
    core = make_core(tmp_path, ("Decisions",))
    try:
        assert decisions(core, "web1.example.com", "whitelist") == [
            ["Service", "*"], ["Path", "/etc/apt/apt.conf"], ["Package", "vim"]]
        assert decisions(core, "db1.example.com", "whitelist") == [["Service", "*"]]
        assert decisions(core, "web1.example.com", "blacklist") == []
        assert decisions(core, "db1.example.com", "blacklist") == [
            ["Path", "/etc/yum.conf"]]
        with pytest.raises(Fault):
            decisions(core, "db1.example.com", "__init__")
        with pytest.raises(PluginExecutionError):
            core.plugins["Decisions"].GetDecisions(None, "lists")
    finally:
        core.shutdown()


def test_missing_created_and_deleted_files(tmp_path):
    core = make_core(tmp_path, ("Decisions",), filemonitor="poll")
    try:
        assert decisions(core, "web1.example.com", "whitelist") == []
        whitelist = tmp_path / "repo" / "Decisions" / "whitelist.xml"
        write(whitelist, '<Decisions><Decision type="Service" name="ssh"/></Decisions>')
        refresh(core)
        assert decisions(core, "web1.example.com", "whitelist") == [["Service", "ssh"]]
        os.unlink(whitelist)
        refresh(core)
        assert decisions(core, "web1.example.com", "whitelist") == []
    finally:
        core.shutdown()
