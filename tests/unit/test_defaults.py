"""Defaults through the Core: attributes filled in after binding, never overriding."""
import logging

import pytest

from tests.unit import fakeplugins as fp
from tests.unit.test_rules import bundle, build, make_core, write

PLUGINS = ("Bundler", "Rules", "Defaults")


@pytest.fixture(autouse=True)
def clients(monkeypatch):
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        "web1.example.com": ("10.0.0.1", ["web", "debian"], ["base"]),
        "db1.example.com": ("10.0.0.2", ["db"], ["base"]),
    })


@pytest.fixture
def repo(tmp_path):
    bundle(tmp_path, "base", '<Service name="ssh" status="off"/>',
           '<Service name="cron"/>', '<BoundService name="nginx" status="on"/>',
           '<Package name="vim"/>', '<Path name="/etc/none"/>')
    write(tmp_path / "repo" / "Rules" / "r.xml", '<Rules priority="1">'
          '<Service name="ssh" status="on"/><Service name="cron" type="sysv"/>'
          '<Package name="vim"/></Rules>')
    return tmp_path / "repo"


def test_defaults_fill_only_missing_attributes_after_binding(tmp_path, repo):
    write(repo / "Defaults" / "d.xml", '<Defaults priority="1">'
          '<Service name=".*" type="systemd" status="unknown"/>'
          '<Package name=".*" type="deb" version="auto"/>'
          '<Path name="/etc/none" type="file" owner="nobody"/></Defaults>')
    core = make_core(tmp_path, PLUGINS)
    try:
        got = build(core)
        assert got[("Service", "ssh")] == dict(name="ssh", status="off", type="systemd")
        assert got[("Service", "cron")] == dict(name="cron", type="sysv",
                                                status="unknown")
        assert got[("Service", "nginx")] == dict(name="nginx", status="on",
                                                 type="systemd")
        assert got[("Package", "vim")] == dict(name="vim", type="deb", version="auto")
        # Defaults binds nothing: the unbound entry fails, then gets the defaults
        assert got[("Path", "/etc/none")]["failure"] == "no matching generator"
        assert got[("Path", "/etc/none")]["owner"] == "nobody"
        assert core.plugins["Defaults"].Entries == {}
    finally:
        core.shutdown()


def test_priority_conditionals_and_silent_conflicts(tmp_path, repo, caplog):
    write(repo / "Defaults" / "low.xml", '<Defaults priority="1">'
          '<Service name=".*" type="sysv"/><Package name="vim" type="rpm"/>'
          '</Defaults>')
    write(repo / "Defaults" / "high.xml", '<Defaults priority="9">'
          '<Group name="debian"><Service name="ss.*" type="systemd"/>'
          '<Package name="v.m" type="deb"/><Package name="vi." type="apt"/></Group>'
          '</Defaults>')
    caplog.set_level(logging.INFO)
    core = make_core(tmp_path, PLUGINS)
    try:
        web, db = build(core), build(core, "db1.example.com")
        assert web[("Service", "ssh")]["type"] == "systemd"
        assert db[("Service", "ssh")]["type"] == "sysv"
        assert "type" not in web[("Package", "vim")]       # conflict: left alone
        assert db[("Package", "vim")]["type"] == "rpm"
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR
                    and "conflicting" in r.getMessage()]
    finally:
        core.shutdown()


def test_replace_name(tmp_path, repo):
    write(repo / "Defaults" / "d.xml", '<Defaults priority="1">'
          '<Service name=".*" type="systemd" unit="%{name}.service"/></Defaults>')
    core = make_core(tmp_path, PLUGINS, extra="[defaults]\nreplace_name = true\n")
    try:
        assert build(core)[("Service", "cron")]["unit"] == "cron.service"
    finally:
        core.shutdown()


def test_without_defaults_files_nothing_changes(tmp_path, repo):
    core = make_core(tmp_path, PLUGINS)
    try:
        assert build(core)[("Service", "cron")] == dict(name="cron", type="sysv")
    finally:
        core.shutdown()
