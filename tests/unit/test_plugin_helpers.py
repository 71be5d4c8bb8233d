"""The shared plugin helpers, on real files, with a recording fake file monitor."""
import logging
import os

import pytest

from bcfg2_cherry import encryption
from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugin import PluginExecutionError, SpecificityError
from bcfg2_cherry.plugin import helpers
from bcfg2_cherry.plugin.helpers import (
    DefaultTemplateDataProvider, DirectoryBacked, FileBacked, Specificity, StructFile,
    XMLDirectoryBacked, XMLFileBacked, best_matching, get_template_data,
    get_xml_template_data, parse_specificity)
from bcfg2_cherry.plugin.interfaces import TemplateDataProvider
from bcfg2_cherry.xml import tostring

HELPERS = "bcfg2_cherry.plugin.helpers"


# -- fakes ---------------------------------------------------------------------------

class Event:
    def __init__(self, filename, action):
        self.filename = filename
        self.action = action

    def code2str(self):
        return self.action


class FakeFam:
    """Records monitors and, like the real monitor, queues their initial events."""

    def __init__(self):
        self.monitors = []
        self.queue = []

    def AddMonitor(self, path, handler):
        self.monitors.append((path, handler))
        self.queue.append(Event(path, "exists"))
        self.queue[-1].handler = handler
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                self.queue.append(Event(name, "exists"))
                self.queue[-1].handler = handler
            self.queue.append(Event(path, "endExist"))
            self.queue[-1].handler = handler
        return len(self.monitors)

    def drain(self):
        while self.queue:
            event = self.queue.pop(0)
            event.handler.HandleEvent(event)

    def paths(self):
        return [path for path, _ in self.monitors]

    def emit(self, path, action):
        """Deliver an event for ``path`` as a real monitor would, then drain."""
        for mpath, handler in list(self.monitors):
            if mpath == path:
                handler.HandleEvent(Event(path, action))
            elif mpath == os.path.dirname(path) and os.path.isdir(mpath):
                handler.HandleEvent(Event(os.path.basename(path), action))
        self.drain()


class MD:
    """The duck-typed client metadata the helpers need."""

    def __init__(self, hostname="host.example.com", groups=()):
        self.hostname = hostname
        self.groups = set(groups)

    def __repr__(self):
        return "MD(%s)" % self.hostname


class FakeCore:
    def __init__(self, setup=None, providers=()):
        self.setup = setup
        self.providers = list(providers)

    def plugins_by_type(self, interface):
        return [p for p in self.providers if isinstance(p, interface)]


def settings(tmp_path, text=""):
    conf = tmp_path / "bcfg2.conf"
    conf.write_text("[server]\nrepository = %s\n%s" % (tmp_path / "repo", text))
    return Settings(str(conf))


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def names(elements):
    return [el.get("name") for el in elements]


@pytest.fixture(autouse=True)
def no_global_core():
    helpers.set_core(None)
    yield
    helpers.set_core(None)


def errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- FileBacked ----------------------------------------------------------------------

class Counting(FileBacked):
    def __init__(self, name, fam=None):
        FileBacked.__init__(self, name, fam)
        self.indexed = []

    def Index(self):
        self.indexed.append(self.data)


def test_filebacked_reads_bytes_and_indexes_on_events(tmp_path, caplog):
    path = tmp_path / "f"
    path.write_bytes(b"one\xff")
    fb = Counting(str(path))
    fb.HandleEvent(Event(str(path), "exists"))
    assert fb.data == b"one\xff" and fb.indexed == [b"one\xff"]
    path.write_bytes(b"two")
    fb.HandleEvent(Event("f", "changed"))
    assert fb.data == b"two"
    fb.HandleEvent(Event("f", "endExist"))
    path.unlink()
    fb.HandleEvent(Event("f", "deleted"))
    assert fb.data == b"two" and len(fb.indexed) == 2
    fb.HandleEvent(Event("f", "changed"))  # unreadable now: error, last data kept
    assert fb.data == b"two" and len(fb.indexed) == 2
    assert "Failed to read file %s" % path in caplog.text


# -- XMLFileBacked -------------------------------------------------------------------

def test_xml_file_parses_root_children_label(tmp_path):
    path = write(tmp_path / "a.xml", '<?xml version="1.0" encoding="UTF-8"?>\n'
                 '<Rules priority="1">\n  <!-- c -->\n  <Path name="/x"/>\n</Rules>\n')
    xf = XMLFileBacked(path)
    assert not xf.loaded
    xf.HandleEvent(Event(path, "exists"))
    assert xf.loaded and xf.label == "Rules"
    assert xf.xdata.get("priority") == "1"
    assert len(xf.entries) == 2 and xf.entries[1].get("name") == "/x"
    assert xf.data.startswith(b"<?xml")
    assert [el.get("name") for el in xf] == [None, "/x"]


def test_should_monitor_adds_a_monitor_that_loads_the_file(tmp_path):
    path = write(tmp_path / "a.xml", "<A/>")
    fam = FakeFam()
    xf = XMLFileBacked(path, fam=fam, should_monitor=True)
    assert fam.paths() == [path]
    fam.drain()
    assert xf.label == "A"


def test_broken_file_keeps_last_good_version_with_one_error(tmp_path, caplog):
    path = tmp_path / "a.xml"
    write(path, "<A><B/></A>")
    xf = XMLFileBacked(str(path))
    xf.HandleEvent()
    good = xf.xdata
    write(path, "<A>\n<B>\n</A>\n")
    with caplog.at_level(logging.ERROR, logger=HELPERS):
        xf.HandleEvent(Event(str(path), "changed"))
    assert xf.xdata is good and xf.loaded and xf.data == b"<A><B/></A>"
    assert len(errors(caplog)) == 1
    assert str(path) in caplog.text and "line 3" in caplog.text


def test_file_broken_from_the_start_stays_unloaded(tmp_path, caplog):
    path = write(tmp_path / "a.xml", "<A>")
    xf = XMLFileBacked(path)
    xf.HandleEvent()
    assert not xf.loaded and xf.xdata is None and xf.entries == []


def test_index_failure_restores_previous_state(tmp_path, caplog):
    class Prio(XMLFileBacked):
        def Index(self):
            self.priority = int(self.xdata.get("priority"))

    path = tmp_path / "p.xml"
    write(path, '<Rules priority="5"><P/></Rules>')
    xf = Prio(str(path))
    xf.HandleEvent()
    write(path, '<Rules priority="x"><Q/><R/></Rules>')
    xf.HandleEvent(Event(str(path), "changed"))
    assert xf.priority == 5 and [e.tag for e in xf.entries] == ["P"]
    assert "keeping the previous version" in caplog.text


XI = 'xmlns:xi="http://www.w3.org/2001/XInclude"'


def test_xinclude_relative_nested_and_monitored(tmp_path):
    main = write(tmp_path / "main.xml",
                 '<Bundle %s><Path name="/a"/><xi:include href="sub/one.xml"/>'
                 '<Path name="/z"/></Bundle>' % XI)
    one = write(tmp_path / "sub" / "one.xml",
                '<Group name="g" %s><Path name="/one"/>'
                '<xi:include href="two.xml"/></Group>' % XI)
    two = write(tmp_path / "sub" / "two.xml", '<Path name="/two"/>')
    fam = FakeFam()
    xf = XMLFileBacked(main, fam=fam, should_monitor=True)
    fam.drain()
    assert [e.tag for e in xf.entries] == ["Path", "Group", "Path"]
    assert names(xf.xdata.iter("Path")) == ["/a", "/one", "/two", "/z"]
    assert xf.extras == [one, two]
    assert fam.paths() == [main, one, two]
    # a change two levels down reloads the including file
    write(tmp_path / "sub" / "two.xml", '<Path name="/two-b"/>')
    fam.emit(two, "changed")
    assert "/two-b" in names(xf.xdata.iter("Path"))


def test_xinclude_glob_includes_every_match_but_itself(tmp_path):
    main = write(tmp_path / "all.xml",
                 '<Rules %s><xi:include href="*.xml"/></Rules>' % XI)
    write(tmp_path / "b.xml", '<Rules><Path name="/b"/></Rules>')
    write(tmp_path / "a.xml", '<Rules><Path name="/a"/></Rules>')
    (tmp_path / "d.xml").mkdir()
    xf = XMLFileBacked(main)
    xf.HandleEvent()
    assert [e.tag for e in xf.entries] == ["Rules", "Rules"]
    assert names(xf.xdata.iter("Path")) == ["/a", "/b"]
    assert xf.extras == [str(tmp_path / "a.xml"), str(tmp_path / "b.xml")]


def test_missing_include_dropped_with_error_and_picked_up_when_created(tmp_path, caplog):
    main = write(tmp_path / "main.xml",
                 '<B %s><P name="1"/><xi:include href="later.xml"/><P name="2"/></B>'
                 % XI)
    fam = FakeFam()
    xf = XMLFileBacked(main, fam=fam, should_monitor=True)
    with caplog.at_level(logging.DEBUG, logger=HELPERS):
        fam.drain()
    assert xf.loaded and names(xf.entries) == ["1", "2"]
    assert [r.levelname for r in caplog.records if "later.xml" in r.getMessage()] \
        == ["ERROR"]
    later = str(tmp_path / "later.xml")
    assert later in fam.paths() and xf.extras == []
    write(tmp_path / "later.xml", '<P name="late"/>')
    fam.emit(later, "created")
    assert names(xf.entries) == ["1", "late", "2"]


def test_missing_include_with_fallback_uses_it_and_logs_debug_only(tmp_path, caplog):
    main = write(tmp_path / "main.xml",
                 '<B %s><xi:include href="nope.xml"><xi:fallback><P name="fb"/>'
                 '</xi:fallback></xi:include><xi:include href="none/*.xml">'
                 '<xi:fallback/></xi:include></B>' % XI)
    xf = XMLFileBacked(main)
    with caplog.at_level(logging.DEBUG, logger=HELPERS):
        xf.HandleEvent()
    assert names(xf.entries) == ["fb"]
    assert not errors(caplog)
    assert "nope.xml does not exist" in caplog.text


def test_broken_included_file_keeps_its_last_good_version(tmp_path, caplog):
    main = write(tmp_path / "main.xml", '<B %s><xi:include href="inc.xml"/></B>' % XI)
    inc = write(tmp_path / "inc.xml", '<P name="good"/>')
    fam = FakeFam()
    xf = XMLFileBacked(main, fam=fam, should_monitor=True)
    fam.drain()
    write(tmp_path / "inc.xml", '<P name="half')
    fam.emit(inc, "changed")
    assert names(xf.entries) == ["good"]
    assert "last good version" in caplog.text


def test_include_loops_terminate(tmp_path, caplog):
    a = write(tmp_path / "a.xml", '<A %s><xi:include href="b.xml"/></A>' % XI)
    write(tmp_path / "b.xml", '<B %s><xi:include href="c.xml"/></B>' % XI)
    write(tmp_path / "c.xml", '<C %s><xi:include href="b.xml"/>'
          '<xi:include href="a.xml"/></C>' % XI)
    xf = XMLFileBacked(a)
    xf.HandleEvent()
    assert [el.tag for el in xf.xdata.iter()] == ["A", "B", "C"]
    assert "would loop" in caplog.text


def test_initial_event_of_an_include_monitor_does_not_reload(tmp_path):
    class Counter(XMLFileBacked):
        count = 0

        def Index(self):
            Counter.count += 1

    main = write(tmp_path / "m.xml", '<M %s><xi:include href="i.xml"/>'
                 '<xi:include href="gone.xml"><xi:fallback/></xi:include></M>' % XI)
    write(tmp_path / "i.xml", "<I/>")
    fam = FakeFam()
    Counter(main, fam=fam, should_monitor=True)
    fam.drain()
    assert Counter.count == 1


# -- StructFile ----------------------------------------------------------------------

STRUCT = """<Bundle>
  <!-- comment -->
  <Path name="/all"/>
  <Group name="web">
    <Path name="/web"/>
    <Group name="debian"><Package name="web-debian"/></Group>
    <Group name="debian" negate="TRUE"><Package name="web-notdebian"/></Group>
  </Group>
  <Client name="host.example.com"><Service name="host-only"/></Client>
  <Client name="HOST.example.com"><Service name="not-exact"/></Client>
  <Group name="web" negate="true"><Path name="/notweb"/></Group>
  <Path name="/parent">
    <Group name="web"><Child name="webchild"/></Group>
    <Group name="db"><Child name="dbchild"/></Group>
    <!-- inner -->
  </Path>
  <Path name="/last"/>
</Bundle>
"""


def struct(tmp_path, text=STRUCT, name="b.xml", core=None, cls=StructFile):
    sf = cls(write(tmp_path / name, text), core=core)
    sf.HandleEvent()
    return sf


def test_match_filters_by_group_client_and_negation(tmp_path):
    sf = struct(tmp_path)
    web = sf.Match(MD(groups=["web", "debian"]))
    assert names(web) == ["/all", "/web", "web-debian", "host-only", "/parent",
                          "/last"]
    assert names(web[4]) == ["webchild"]  # children filtered, comment gone
    other = sf.Match(MD("other", ["db"]))
    assert names(other) == ["/all", "/notweb", "/parent", "/last"]
    assert names(other[2]) == ["dbchild"]


def test_match_returns_copies(tmp_path):
    sf = struct(tmp_path)
    first = sf.Match(MD(groups=["web"]))
    first[0].set("name", "changed")
    first[4].clear()
    again = sf.Match(MD(groups=["web"]))
    assert again[0].get("name") == "/all" and len(again[4]) == 1


def test_xmlmatch_appends_holding_content_at_parent_end(tmp_path):
    sf = struct(tmp_path)
    doc = sf.XMLMatch(MD(groups=["web", "debian"]))
    assert doc.tag == "Bundle"
    assert [(el.tag, el.get("name")) for el in doc] == [
        ("Path", "/all"), ("Path", "/parent"), ("Path", "/last"), ("Path", "/web"),
        ("Package", "web-debian"), ("Service", "host-only")]
    assert names(doc[1]) == ["webchild"]
    assert "comment" not in tostring(doc) and "Group" not in tostring(doc)
    # the cached document is untouched
    assert len(sf.xdata.findall("Group")) == 2 and len(sf.xdata.findall("Client")) == 2


def test_match_on_unloaded_file_fails_loudly(tmp_path):
    sf = StructFile(write(tmp_path / "x.xml", "<broken"))
    sf.HandleEvent()
    with pytest.raises(PluginExecutionError, match="x.xml"):
        sf.Match(MD())


def test_subclass_conditionals_with_extra_arguments(tmp_path):
    class InfoLike(StructFile):
        conditionals = dict(StructFile.conditionals,
                            Path=lambda el, md, entry: el.get("name") == entry)

        def Match(self, metadata, entry):  # pylint: disable=arguments-differ
            return self._do_match(metadata, entry)

    sf = struct(tmp_path, '<FileInfo><Path name="/a"><Info mode="600"/></Path>'
                '<Path name="/b" negate="true"><Info mode="644"/></Path></FileInfo>',
                cls=InfoLike)
    assert [i.get("mode") for i in sf.Match(MD(), "/a")] == ["600", "644"]
    assert [i.get("mode") for i in sf.Match(MD(), "/b")] == []


GENSHI = """<Bundle xmlns:py="http://genshi.edgewall.org/">
  <!-- dropped -->
  <Path py:if="'web' in metadata.groups" name="/genshi-web"/>
  <Path name="${metadata.hostname}-${repo}-${extra}"/>
  <Group name="db"><Path name="/db"/></Group>
</Bundle>
"""


class ExtraData(TemplateDataProvider):
    def __init__(self, **data):
        self.data = data

    def get_xml_template_data(self, structfile, metadata):
        return dict(self.data)

    def get_template_data(self, entry, metadata, template):
        return dict(self.data)

    def __str__(self):
        return "ExtraData%s" % sorted(self.data)


def test_genshi_by_namespace_renders_before_conditionals(tmp_path):
    core = FakeCore(settings(tmp_path), [ExtraData(extra="X")])
    sf = struct(tmp_path, GENSHI, core=core)
    assert sf.template is not None
    repo = str(tmp_path / "repo")
    md = MD("h1", ["web"])
    assert names(sf.Match(md)) == ["/genshi-web", "h1-%s-X" % repo]
    doc = sf.XMLMatch(MD("h2", ["db"]))
    assert names(doc) == ["h2-%s-X" % repo, "/db"]
    assert "dropped" not in tostring(doc)


def test_genshi_by_file_name_and_global_core(tmp_path):
    helpers.set_core(FakeCore(None, [ExtraData(extra="G")]))
    sf = struct(tmp_path, '<B><P name="${metadata.hostname}${repo}${extra}"/></B>',
                name="b.xml.genshi")
    assert names(sf.Match(MD("h"))) == ["hG"]  # Genshi renders None as nothing
    plain = struct(tmp_path, '<B><P name="${x}"/></B>', name="plain.xml")
    assert plain.template is None and names(plain.Match(MD())) == ["${x}"]


def test_genshi_render_error_names_the_file(tmp_path):
    sf = struct(tmp_path, '<B xmlns:py="http://genshi.edgewall.org/">\n'
                '<P name="${undefined_variable}"/></B>', name="bad.xml")
    with pytest.raises(PluginExecutionError, match=r"bad\.xml.*undefined_variable"):
        sf.Match(MD())


def test_genshi_syntax_error_keeps_previous_template(tmp_path, caplog):
    path = tmp_path / "t.xml"
    sf = struct(tmp_path, '<B xmlns:py="http://genshi.edgewall.org/">'
                '<P py:if="True" name="ok"/></B>', name="t.xml")
    write(path, '<B xmlns:py="http://genshi.edgewall.org/"><P py:if="(" name="x"/></B>')
    sf.HandleEvent(Event(str(path), "changed"))
    assert names(sf.Match(MD())) == ["ok"]
    assert "t.xml" in caplog.text


ENC_CONF = "[encryption]\nalgorithm = aes_256_cbc\nmykey = s3cret\n"


def encrypted_struct(tmp_path, conf, root_attr="", text="top secret"):
    core = FakeCore(settings(tmp_path, conf))
    blob = encryption.ssl_encrypt(text, "s3cret")
    return struct(tmp_path, '<Properties%s><Secret encrypted="mykey">%s</Secret>'
                  '<Plain>x</Plain></Properties>' % (root_attr, blob), core=core), core


def test_encrypted_elements_are_decrypted_at_load(tmp_path):
    sf, _ = encrypted_struct(tmp_path, ENC_CONF, text="t\u00f6p secret")
    assert sf.xdata.find("Secret").text == "t\u00f6p secret"
    assert sf.Match(MD())[0].text == "t\u00f6p secret"


def test_decryption_failure_aborts_load_and_keeps_old_data(tmp_path, caplog):
    sf, _ = encrypted_struct(tmp_path, ENC_CONF)
    path = tmp_path / "b.xml"
    write(path, '<Properties><Secret encrypted="otherkey">%s</Secret></Properties>'
          % encryption.ssl_encrypt("x", "s3cret"))
    sf.HandleEvent(Event(str(path), "changed"))
    assert sf.xdata.find("Secret").text == "top secret"
    assert "Failed to decrypt Secret element in %s" % path in caplog.text
    first = StructFile(str(path), core=sf.core)
    first.HandleEvent()
    assert not first.loaded


def test_lax_decryption_from_setup_and_root_attribute(tmp_path):
    wrong = ENC_CONF.replace("s3cret", "wrong")
    sf, _ = encrypted_struct(tmp_path, wrong + "lax_decryption = true\n")
    assert sf.loaded and sf.xdata.find("Secret").text.startswith("U2FsdGVk")
    sf, _ = encrypted_struct(tmp_path, wrong + "lax_decryption = true\n",
                             ' lax_decryption="false"')
    assert not sf.loaded
    sf, _ = encrypted_struct(tmp_path, wrong, ' lax_decryption="True"')
    assert sf.loaded


def test_encryption_switched_off_by_subclass(tmp_path):
    class NoCrypt(StructFile):
        encryption = False

    sf = struct(tmp_path, '<I><Info encrypted="k">zz</Info></I>', cls=NoCrypt)
    assert sf.loaded and sf.xdata[0].text == "zz"


# -- DirectoryBacked -----------------------------------------------------------------

def make_tree(root):
    write(root / "a.xml", '<A name="a"/>')
    write(root / "sub" / "b.xml", "<B/>")
    write(root / "sub" / "deeper" / "c.xml", "<C/>")
    write(root / ".a.xml.swp", "junk")
    write(root / "a.xml~", "junk")
    write(root / ".#a.xml", "junk")
    write(root / "notes.txt", "hello")


def test_directory_backed_tracks_a_tree(tmp_path, caplog):
    root = tmp_path / "Bundler"
    make_tree(root)
    fam = FakeFam()
    db = XMLDirectoryBacked(str(root), fam)
    fam.drain()
    assert sorted(db.entries) == ["a.xml", "sub/b.xml", "sub/deeper/c.xml"]
    assert db["sub/b.xml"].label == "B" and len(db) == 3
    assert sorted(fam.paths()) == [str(root), str(root / "sub"),
                                   str(root / "sub" / "deeper")]
    assert "notes.txt" in caplog.text  # does not match patterns: logged
    assert "swp" not in caplog.text    # editor droppings: silent

    write(root / "new" / "d.xml", "<D/>")
    fam.emit(str(root / "new"), "created")
    assert db["new/d.xml"].label == "D"

    write(root / "a.xml", "<A2/>")
    fam.emit(str(root / "a.xml"), "changed")
    assert db["a.xml"].label == "A2"

    (root / "sub" / "b.xml").unlink()
    fam.emit(str(root / "sub" / "b.xml"), "deleted")
    assert "sub/b.xml" not in db.entries and "sub/deeper/c.xml" in db.entries
    fam.emit(str(root / "sub"), "deleted")
    assert sorted(db.entries) == ["a.xml", "new/d.xml"]


def test_directory_backed_children_get_the_core_and_plugin_overrides(tmp_path):
    class Bundles(XMLDirectoryBacked):
        __child__ = StructFile

        def __init__(self, data, fam, core):
            self.core = core
            self.rebuilt = 0
            XMLDirectoryBacked.__init__(self, data, fam)

        def HandleEvent(self, event):
            XMLDirectoryBacked.HandleEvent(self, event)
            self.rebuilt += 1

    core = FakeCore(settings(tmp_path, ENC_CONF))
    write(tmp_path / "B" / "s.xml", '<S><P encrypted="mykey">%s</P></S>'
          % encryption.ssl_encrypt("plain", "s3cret"))
    fam = FakeFam()
    db = Bundles(str(tmp_path / "B"), fam, core)
    fam.drain()
    assert db["s.xml"].core is core and db["s.xml"].xdata[0].text == "plain"
    assert db.rebuilt == 3  # exists (dir), exists (file), endExist


def test_directory_backed_mixed_into_a_plugin(tmp_path):
    from bcfg2_cherry.plugin import Plugin, Structure

    class Bundler(Plugin, Structure, XMLDirectoryBacked):
        __child__ = StructFile

        def __init__(self, core):
            Plugin.__init__(self, core)
            XMLDirectoryBacked.__init__(self, self.data, core.fam)

    core = FakeCore(settings(tmp_path))
    core.fam = FakeFam()
    write(tmp_path / "repo" / "Bundler" / "b.xml", "<Bundle/>")
    plugin = Bundler(core)
    core.fam.drain()
    assert plugin.logger.name == "Bundler" and plugin.fam is core.fam
    assert plugin["b.xml"].core is core and plugin["b.xml"].label == "Bundle"


def test_directory_backed_without_monitor_reads_once(tmp_path):
    root = tmp_path / "Probes"
    make_tree(root)
    db = DirectoryBacked(str(root))
    assert sorted(db.entries) == ["a.xml", "notes.txt", "sub/b.xml",
                                  "sub/deeper/c.xml"]
    assert db["notes.txt"].data == b"hello"
    assert sorted(key for key, _ in db) == sorted(db.entries)


def test_directory_backed_creates_missing_directory(tmp_path):
    DirectoryBacked(str(tmp_path / "missing"), FakeFam())
    assert (tmp_path / "missing").is_dir()


def test_included_file_of_directory_child_reloads_it(tmp_path):
    root = tmp_path / "Rules"
    write(root / "r.xml", '<Rules %s><xi:include href="../shared.xml"/></Rules>' % XI)
    shared = write(tmp_path / "shared.xml", '<Path name="/1"/>')
    fam = FakeFam()
    db = XMLDirectoryBacked(str(root), fam)
    fam.drain()
    assert shared in fam.paths()
    write(tmp_path / "shared.xml", '<Path name="/2"/>')
    fam.emit(shared, "changed")
    assert names(db["r.xml"].entries) == ["/2"]


# -- Specificity ---------------------------------------------------------------------

EXTS = [".genshi", ".jinja2", ".cheetah", ".crypt", ".genshi.crypt", ".crypt.genshi"]


@pytest.mark.parametrize("filename, kind, value, ext", [
    ("motd", "all", True, ""),
    ("motd.jinja2", "all", True, ".jinja2"),
    ("motd.G10_debian", "group", ("debian", 10), ""),
    ("motd.G50_web.example.net.genshi", "group", ("web.example.net", 50), ".genshi"),
    ("motd.H_web1.example.com", "hostname", "web1.example.com", ""),
    ("motd.H_web1.example.com.crypt", "hostname", "web1.example.com", ".crypt"),
    ("motd.H_h.genshi.crypt", "hostname", "h", ".genshi.crypt"),
    ("motd.crypt.genshi", "all", True, ".crypt.genshi"),
])
def test_parse_specificity(filename, kind, value, ext):
    spec, rest = parse_specificity(filename, "motd", EXTS)
    assert rest == ext
    if kind == "group":
        assert (spec.group, spec.prio) == value and not spec.hostname
    else:
        assert getattr(spec, kind) == value


@pytest.mark.parametrize("filename", [
    "motd2", "issue", "motd.bak", "motd.G_web", "motd.Gx_web", "motd.H_", "motd.G10_",
    "motd.jinja2.G10_web"])
def test_parse_specificity_refuses(filename):
    with pytest.raises(SpecificityError):
        parse_specificity(filename, "motd", EXTS)


def test_parse_specificity_without_extensions_keeps_dots_in_names():
    spec, rest = parse_specificity("/x/motd.G10_web.genshi", "motd")
    assert (spec.group, rest) == ("web.genshi", "")


def test_specificity_order_and_match():
    host = Specificity(hostname="h")
    g50 = Specificity(group="a", prio=50)
    g10 = Specificity(group="b", prio=10)
    everyone = Specificity(all=True)
    assert host > g50 > g10 > everyone
    assert sorted([g10, everyone, host, g50]) == [everyone, g10, g50, host]
    assert not Specificity(group="c", prio=50) < g50
    assert Specificity(group="a", prio=50) == g50 and g50 != Specificity(group="c",
                                                                          prio=50)
    md = MD("h", ["a"])
    assert host.matches(md) and g50.matches(md) and everyone.matches(md)
    assert not g10.matches(md) and not Specificity(hostname="h2").matches(md)


class Cand:
    def __init__(self, name, **spec):
        self.name = name
        self.specific = Specificity(**spec)


def test_best_matching_prefers_host_then_priority(caplog):
    cands = [Cand("f", all=True), Cand("f.G10_a", group="a", prio=10),
             Cand("f.G50_b", group="b", prio=50), Cand("f.H_h", hostname="h"),
             Cand("f.G90_z", group="z", prio=90)]
    assert best_matching(cands, MD("h", ["a", "b"])).name == "f.H_h"
    assert best_matching(cands, MD("o", ["a", "b"])).name == "f.G50_b"
    assert best_matching(cands, MD("o", ["a"])).name == "f.G10_a"
    assert best_matching(cands, MD("o", [])).name == "f"
    assert not caplog.records
    with pytest.raises(PluginExecutionError, match="o"):
        best_matching(cands[1:3], MD("o", []))


def test_best_matching_tie_is_broken_by_name_with_a_warning(caplog):
    tied = [Cand("f.G50_y", group="y", prio=50), Cand("f.G50_x", group="x", prio=50)]
    assert best_matching(tied, MD("t1", ["x", "y"])).name == "f.G50_x"
    assert best_matching(list(reversed(tied)), MD("t1", ["x", "y"])).name == "f.G50_x"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "f.G50_x" in warnings[0].getMessage()


# -- template data -------------------------------------------------------------------

def test_template_data_defaults_and_providers(tmp_path, caplog):
    from lxml.etree import Element
    core = FakeCore(settings(tmp_path), [ExtraData(a=1, metadata="x"),
                                         ExtraData(a=2, b=3)])
    helpers.set_core(core)
    assert helpers.get_core() is core
    entry = Element("Path", name="/etc/issue.net", realname="/etc/issue")
    md = MD()
    data = get_template_data(entry, md, "/repo/Cfg/etc/issue/issue.jinja2")
    assert data == dict(name="/etc/issue", metadata=md,
                        source_path="/repo/Cfg/etc/issue/issue.jinja2",
                        repo=str(tmp_path / "repo"), a=1, b=3)
    assert "metadata" in caplog.text and "ExtraData['a', 'b']" in caplog.text
    plain = get_template_data(Element("Path", name="/n"), md, "t", default=False)
    assert plain == dict(a=1, metadata="x", b=3)


def test_xml_template_data_uses_the_files_core(tmp_path):
    core = FakeCore(settings(tmp_path), [ExtraData(extra=1)])
    sf = struct(tmp_path, "<B/>", core=core)
    md = MD()
    assert get_xml_template_data(sf, md) == dict(metadata=md,
                                                 repo=str(tmp_path / "repo"), extra=1)
    assert DefaultTemplateDataProvider().get_xml_template_data(None, md) == dict(
        metadata=md, repo=None)


@pytest.mark.parametrize("dropping", ["a.xml.orig", "a.xml.rej", ".#a.xml", "a.xml~",
                                      ".a.xml.swp", "4913"])
def test_directory_backed_ignores_editor_and_merge_droppings(tmp_path, caplog, dropping):
    root = tmp_path / "Bundler"
    write(root / "a.xml", "<A/>")
    write(root / dropping, "<Dropped/>")
    db = DirectoryBacked(str(root), None)
    assert sorted(db.entries) == ["a.xml"]
    assert dropping not in caplog.text
