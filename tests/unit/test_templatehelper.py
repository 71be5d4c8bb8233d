"""TemplateHelper through the Core: ``metadata.TemplateHelper``, defaults in Cfg text
templates, reloads, import errors and metadata cache expiry (spec/repository.md §13)."""
import logging
import os
import sys
import time

import pytest

from tests.unit import fakeplugins as fp
from tests.unit.test_rules import make_core, refresh

FAKE = "tests.unit.fakeplugins:"
WEB = "web1.example.com"
DB = "db1.example.com"

UTIL = '''__export__ = ["fqdn", "Counter"]
__default__ = ["shout"]


def fqdn(md):
    return md.hostname


def shout(text):
    return text.upper()


class Counter:
    def __init__(self, start):
        self.value = start
'''

NET = '''__export__ = ["mask"]
__default__ = ["netmask"]
mask = "255.255.255.0"
netmask = mask
'''


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    monkeypatch.setattr(fp.FakeMetadata, "clients", {
        WEB: ("10.0.0.1", ["web"], ["base"]), DB: ("10.0.0.2", ["db"], ["base"])})
    monkeypatch.setattr(fp.FakeBundler, "bundles", {"base": [
        '<Path name="/etc/j"/>', '<Path name="/etc/g"/>', '<Path name="/etc/ch"/>']})
    monkeypatch.setattr(fp.FakeBundler, "raise_for", set())


def write(path, text):
    """Write a file so that a polling monitor surely sees a change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.stat().st_mtime if path.exists() else time.time() - 10
    path.write_text(text)
    os.utime(path, (old + 1, old + 1))


def helpers(tmp_path):
    return tmp_path / "repo" / "TemplateHelper"


def start(tmp_path, filemonitor="pseudo", extra="", plugins=("TemplateHelper",)):
    return make_core(tmp_path, (FAKE + "FakeBundler", "Cfg") + tuple(plugins),
                     filemonitor=filemonitor, extra=extra)


def texts(core, host=WEB):
    config = core.BuildConfiguration(host)
    return {e.get("name"): (e.text if e.get("failure") is None else e.get("failure"))
            for bundle in config for e in bundle}


@pytest.fixture
def repo(tmp_path):
    write(helpers(tmp_path) / "util.py", UTIL)
    write(helpers(tmp_path) / "sub" / "net.py", NET)
    cfg = tmp_path / "repo" / "Cfg" / "etc"
    write(cfg / "j" / "j.jinja2",
          "{{ metadata.TemplateHelper['util'].fqdn(metadata) }} {{ shout('hi') }} "
          "{{ metadata.TemplateHelper['net'].mask }} {{ netmask }} "
          "{{ metadata.TemplateHelper['util'].Counter(3).value }}\n")
    write(cfg / "g" / "g.genshi",
          "${metadata.TemplateHelper['util'].fqdn(metadata)} ${shout('hi')} ${netmask}\n")
    write(cfg / "ch" / "ch.cheetah", "$shout('cheetah') $self.netmask\n")
    return tmp_path / "repo"


def test_helpers_in_metadata_and_defaults_in_every_text_template(tmp_path, repo):
    core = start(tmp_path)
    try:
        md = core.build_metadata(WEB)
        assert sorted(md.TemplateHelper) == ["net", "util"]   # directories: no namespace
        assert md.TemplateHelper["util"].fqdn(md) == WEB
        assert "TemplateHelper" in md.connectors
        assert texts(core) == {
            "/etc/j": "%s HI 255.255.255.0 255.255.255.0 3\n" % WEB,
            "/etc/g": "%s HI 255.255.255.0\n" % WEB,
            "/etc/ch": "CHEETAH 255.255.255.0\n"}
        assert texts(core, DB)["/etc/g"] == "%s HI 255.255.255.0\n" % DB
        # imported under upstream's module name, without bytecode in the repository
        assert sys.modules["__TemplateHelper_util"].shout("x") == "X"
        assert not list(helpers(tmp_path).rglob("__pycache__"))
    finally:
        core.shutdown()


def test_xml_templates_do_not_get_the_defaults(tmp_path, repo, monkeypatch):
    write(repo / "Bundler" / "xml.xml",
          '<Bundle xmlns:py="http://genshi.edgewall.org/">'
          '<Path name="/etc/j"/>'
          '<Path py:if="defined(\'shout\')" name="/shout-defined"/>'
          '<Path name="/util-${metadata.TemplateHelper[\'util\'].fqdn(metadata)}"/>'
          '</Bundle>')
    monkeypatch.setattr(fp.FakeMetadata, "clients", {WEB: ("10.0.0.1", ["web"], ["xml"])})
    core = make_core(tmp_path, ("Bundler", "Cfg", "TemplateHelper"))
    try:
        names = sorted(texts(core))
        assert names == ["/etc/j", "/util-%s" % WEB]
    finally:
        core.shutdown()


def test_reserved_missing_and_colliding_symbols(tmp_path, repo, caplog):
    write(helpers(tmp_path) / "odd.py",
          '__export__ = ["data", "name", "fam", "Index", "HandleEvent", "absent", "ok"]\n'
          '__default__ = ["name", "path", "metadata", "ok", "extra", "shout"]\n'
          'data = name = fam = Index = HandleEvent = path = metadata = "module"\n'
          'ok = "fine"\nextra = "more"\n'
          'def shout(text):\n    return "odd " + text\n')
    write(repo / "Cfg" / "etc" / "j" / "j.jinja2",
          "{{ name }} {{ path }} {{ metadata.hostname }} {{ ok }} {{ extra }} "
          "{{ shout('x') }}\n")
    caplog.set_level(logging.WARNING)
    core = start(tmp_path)
    try:
        odd = core.build_metadata(WEB).TemplateHelper["odd"]
        assert odd.ok == "fine" and odd.extra == "more"
        assert odd.name == str(helpers(tmp_path) / "odd.py")   # not replaced
        assert not hasattr(odd, "absent")
        # the core's variables stay; odd.py sorts before util.py, so its shout wins
        assert texts(core)["/etc/j"] == "/etc/j /etc/j %s fine more odd x\n" % WEB
        log = caplog.text
        for sym in ("data", "name", "fam", "Index", "HandleEvent"):
            assert "odd.py: %s is a reserved keyword, skipping export" % sym in log
        for sym in ("name", "path", "metadata"):
            assert "odd.py: %s is a reserved keyword, not adding as default" % sym in log
        assert "odd.py exports absent, but has no such attribute" in log
        assert "Duplicate default variable shout" in log
    finally:
        core.shutdown()


def test_broken_helpers_are_logged_and_the_others_work(tmp_path, repo, caplog):
    write(helpers(tmp_path) / "noexport.py", "x = 1\n__default__ = ['x']\n")
    write(helpers(tmp_path) / "syntax.py", "__export__ = ['f']\ndef f(:\n")
    write(helpers(tmp_path) / "raises.py", "__export__ = ['f']\nraise KeyError('boom')\n")
    write(helpers(tmp_path) / "exits.py", "import sys\n__export__ = []\nsys.exit(3)\n")
    write(helpers(tmp_path) / "notalist.py", "__export__ = 'f'\nf = 1\n")
    for junk in ("util.pyc", "util.pyo", ".#util.py", "util.py~", ".util.py.swp"):
        write(helpers(tmp_path) / junk, "junk")
    caplog.set_level(logging.ERROR)
    core = start(tmp_path)
    try:
        log = caplog.text
        assert "noexport.py has no __export__ list" in log
        assert "Failed to import %s: SyntaxError" % (helpers(tmp_path) / "syntax.py") in log
        assert "Failed to import %s: KeyError" % (helpers(tmp_path) / "raises.py") in log
        assert "Failed to import %s: SystemExit" % (helpers(tmp_path) / "exits.py") in log
        assert "notalist.py: __export__ and __default__ must be lists" in log
        md = core.build_metadata(WEB)
        assert sorted(md.TemplateHelper) == ["exits", "net", "noexport", "notalist",
                                             "raises", "syntax", "util"]
        assert not hasattr(md.TemplateHelper["noexport"], "x")
        assert texts(core)["/etc/g"] == "%s HI 255.255.255.0\n" % WEB
    finally:
        core.shutdown()


def test_changes_reload_and_import_errors_keep_the_previous_exports(tmp_path, repo,
                                                                    caplog):
    core = start(tmp_path, filemonitor="poll")
    util = helpers(tmp_path) / "util.py"
    try:
        assert texts(core)["/etc/g"].startswith("%s HI" % WEB)
        write(util, '__export__ = ["fqdn"]\n__default__ = ["shout"]\n'
              'def fqdn(md):\n    return "fq-" + md.hostname\n'
              'def shout(text):\n    return text + "!"\n')
        refresh(core)
        assert texts(core)["/etc/g"] == "fq-%s hi! 255.255.255.0\n" % WEB
        assert not hasattr(core.build_metadata(WEB).TemplateHelper["util"], "Counter")
        # a broken edit keeps what worked
        write(util, "__export__ = ['fqdn']\ndef fqdn(md:\n")
        caplog.set_level(logging.ERROR)
        refresh(core)
        assert "Failed to import %s" % util in caplog.text
        assert texts(core)["/etc/g"] == "fq-%s hi! 255.255.255.0\n" % WEB
        # a new helper, then the old one deleted
        write(helpers(tmp_path) / "late.py", "__export__ = ['v']\n__default__ = "
              "['shout']\nv = 7\ndef shout(t):\n    return 'late ' + t\n")
        refresh(core)
        assert core.build_metadata(WEB).TemplateHelper["late"].v == 7
        assert texts(core)["/etc/g"] == "fq-%s late hi 255.255.255.0\n" % WEB
        os.unlink(util)
        refresh(core)
        assert sorted(core.build_metadata(WEB).TemplateHelper) == ["late", "net"]
        assert "__TemplateHelper_util" not in sys.modules
        built = texts(core)
        assert built["/etc/g"].startswith("bind error") and "util" in built["/etc/g"]
    finally:
        core.shutdown()


@pytest.mark.parametrize("mode", ["aggressive", "cautious", "off"])
def test_any_change_expires_the_metadata_cache(tmp_path, repo, mode):
    core = start(tmp_path, filemonitor="poll",
                 extra="[caching]\nclient_metadata = %s\n" % mode)
    try:
        first = core.build_metadata(WEB)
        assert (core.build_metadata(WEB) is first) is (mode != "off")
        write(helpers(tmp_path) / "new.py", "__export__ = ['n']\nn = 1\n")
        refresh(core)
        second = core.build_metadata(WEB)
        assert second is not first and "new" in second.TemplateHelper
        if mode != "off":
            assert core.build_metadata(WEB) is second
            write(helpers(tmp_path) / "new.py", "__export__ = ['n']\nn = 22\n")
            refresh(core)
            third = core.build_metadata(WEB)
            assert third is not second and third.TemplateHelper["new"].n == 22
            os.unlink(helpers(tmp_path) / "new.py")
            refresh(core)
            assert "new" not in core.build_metadata(WEB).TemplateHelper
    finally:
        core.shutdown()
