"""The file monitor backends, driven through their public API with real files."""
import logging
import os
import threading
import time

import pytest

from bcfg2_cherry import filemonitor
from bcfg2_cherry.filemonitor import Event, FileMonitor, Inotify, Poll, Pseudo, load
from bcfg2_cherry.state import atomic_write


class Recorder:
    """A handler that remembers ``(requestID, filename, action)`` of what it got."""

    def __init__(self, fail_on=None):
        self.got = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def HandleEvent(self, event):  # pylint: disable=invalid-name
        with self.lock:
            self.got.append((event.requestID, event.filename, event.code2str()))
        if self.fail_on is not None and event.filename == self.fail_on:
            raise RuntimeError("handler failure for %s" % event.filename)

    def actions(self, filename):
        with self.lock:
            return [action for _, name, action in self.got if name == filename]

    def clear(self):
        with self.lock:
            self.got = []


def wait_until(fam, predicate, timeout=5.0):
    """Handle events until ``predicate()`` holds; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fam.handle_event_set()
        if predicate():
            return True
        fam.wait(0.02)
    fam.handle_event_set()
    return predicate()


def settle(fam, seconds=0.25):
    """Handle whatever else arrives in the next ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        fam.wait(0.02)
        fam.handle_event_set()


def make(backend, **kwargs):
    if backend == "inotify":
        return Inotify(debounce=0.05, **kwargs)
    if backend == "poll":
        return Poll(interval=0.05, **kwargs)
    return Pseudo(**kwargs)


@pytest.fixture(params=["inotify", "inotify-root", "poll"])
def live(request, tmp_path):
    """A started real backend, shut down after the test; ``inotify-root`` serves the
    test's directory (but not its parent) from one recursive watch."""
    if request.param == "inotify-root":
        fam = make("inotify", recursive_roots=[tmp_path])
    else:
        fam = make(request.param)
    fam.start()
    yield fam
    fam.shutdown()


def write(path, data):
    with open(path, "w") as fh:
        fh.write(data)


# ---------------------------------------------------------------- Event and load()

def test_event_attributes():
    event = Event(3, "/x/y", "changed")
    assert (event.requestID, event.filename, event.action) == (3, "/x/y", "changed")
    assert event.code2str() == "changed"
    assert "changed" in repr(event) and "/x/y" in repr(event) and "3" in repr(event)


def test_load_names(caplog):
    assert load("default") is Inotify
    assert load("inotify") is Inotify and load("INotify") is Inotify
    assert load("poll") is Poll and load("polling") is Poll
    assert load("pseudo") is Pseudo
    with caplog.at_level(logging.WARNING):
        assert load("gamin") is Inotify
    assert "gamin" in caplog.text
    with pytest.raises(ValueError) as err:
        load("fam")
    for name in ("inotify", "poll", "pseudo", "default"):
        assert name in str(err.value)
    assert set(filemonitor.available) >= {"default", "inotify", "poll", "pseudo"}
    assert all(issubclass(cls, FileMonitor) for cls in filemonitor.available.values())


def test_rmi_names():
    assert "list_event_handlers" in FileMonitor.__rmi__
    assert {"toggle_debug", "set_debug"} <= set(FileMonitor.__rmi__)
    assert {"list_watches", "list_paths"} <= set(Inotify.__rmi__)


# ---------------------------------------------------------------- initial events

@pytest.mark.parametrize("backend", ["inotify", "poll", "pseudo"])
def test_initial_events(tmp_path, backend):
    (tmp_path / "b").write_text("b")
    (tmp_path / "a").write_text("a")
    (tmp_path / "sub").mkdir()
    single = tmp_path / "sub" / "file"
    single.write_text("x")
    fam = make(backend)
    handler = Recorder()
    try:
        dir_id = fam.AddMonitor(str(tmp_path) + "/", handler)
        file_id = fam.AddMonitor(str(single), handler)
        assert dir_id != file_id
        assert fam.pending()
        fam.start()
        assert fam.handle_event_set() == 6
        assert handler.got == [
            (dir_id, str(tmp_path), "exists"),
            (dir_id, "a", "exists"),
            (dir_id, "b", "exists"),
            (dir_id, "sub", "exists"),
            (dir_id, str(tmp_path), "endExist"),
            (file_id, str(single), "exists"),
        ]
        settle(fam, 0.15)
        assert len(handler.got) == 6, handler.got  # nothing changed, nothing reported
        assert fam.list_event_handlers() == {str(dir_id): repr(handler),
                                             str(file_id): repr(handler)}
    finally:
        fam.shutdown()


def test_initial_events_exact(tmp_path):
    """Directory: exists (full path), exists per entry (bare name), endExist; a file:
    exists (full path) only."""
    (tmp_path / "one").write_text("1")
    fam = Pseudo()
    handler = Recorder()
    dir_id = fam.AddMonitor(str(tmp_path), handler)
    file_id = fam.AddMonitor(str(tmp_path / "one"), handler, handleID="mine")
    assert file_id == "mine"
    fam.handle_event_set()
    assert handler.got == [(dir_id, str(tmp_path), "exists"),
                           (dir_id, "one", "exists"),
                           (dir_id, str(tmp_path), "endExist"),
                           ("mine", str(tmp_path / "one"), "exists")]


def test_pseudo_never_notices_changes(tmp_path):
    fam = Pseudo()
    handler = Recorder()
    fam.AddMonitor(str(tmp_path), handler)
    fam.start()
    fam.handle_event_set()
    handler.clear()
    (tmp_path / "new").write_text("x")
    assert not fam.wait(0.2)
    assert fam.handle_event_set() == 0 and handler.got == []
    fam.shutdown()


# ---------------------------------------------------------------- changes

def test_created_changed_deleted_in_directory(tmp_path, live):
    handler = Recorder()
    live.AddMonitor(str(tmp_path), handler)
    live.handle_event_set()
    target = tmp_path / "entry"
    write(target, "first")
    assert wait_until(live, lambda: handler.actions("entry") == ["created"])
    write(target, "second, longer")
    assert wait_until(live, lambda: handler.actions("entry") == ["created", "changed"])
    target.unlink()
    assert wait_until(live, lambda: handler.actions("entry")[-1:] == ["deleted"])
    (tmp_path / "subdir").mkdir()
    assert wait_until(live, lambda: handler.actions("subdir") == ["created"])
    settle(live, 0.15)
    assert handler.actions("entry") == ["created", "changed", "deleted"]
    # a directory monitor is not recursive
    (tmp_path / "subdir" / "deep").write_text("x")
    settle(live, 0.2)
    assert handler.actions("deep") == [] and handler.actions("subdir") == ["created"]


def test_created_changed_deleted_for_file_monitor(tmp_path, live):
    handler = Recorder()
    target = tmp_path / "watched.xml"
    target.write_text("<a/>")
    live.AddMonitor(str(target), handler)
    live.handle_event_set()
    assert handler.actions(str(target)) == ["exists"]
    (tmp_path / "sibling").write_text("not ours")
    write(target, "<a>changed</a>")
    assert wait_until(live, lambda: handler.actions(str(target))[-1:] == ["changed"])
    target.unlink()
    assert wait_until(live, lambda: handler.actions(str(target))[-1:] == ["deleted"])
    target.write_text("<b/>")
    assert wait_until(live, lambda: handler.actions(str(target))[-1:] == ["created"])
    settle(live, 0.15)
    assert [name for _, name, _ in handler.got] == [str(target)] * len(handler.got)


def test_atomic_rename_is_reported(tmp_path, live):
    handler = Recorder()
    target = tmp_path / "clients.xml"
    target.write_text("<Clients/>")
    dir_id = live.AddMonitor(str(tmp_path), handler)
    file_id = live.AddMonitor(str(target), handler)
    live.handle_event_set()
    handler.clear()
    atomic_write(str(target), "<Clients><Client name='a'/></Clients>")
    assert wait_until(live, lambda: (dir_id, "clients.xml", "changed") in handler.got and
                      (file_id, str(target), "changed") in handler.got)
    # a rename from a temp name other than ours
    (tmp_path / "tmpfile").write_text("<Clients><Client name='b'/></Clients>")
    os.replace(tmp_path / "tmpfile", target)
    assert wait_until(live, lambda: handler.actions("clients.xml").count("changed") == 2)
    settle(live, 0.15)
    assert not [name for _, name, _ in handler.got if name.endswith(".new")]
    assert all(action in ("created", "changed", "deleted") for _, _, action in handler.got)


def test_monitor_on_missing_file(tmp_path, live):
    handler = Recorder()
    target = tmp_path / "later.conf"
    live.AddMonitor(str(target), handler)
    settle(live, 0.1)
    assert handler.got == []
    target.write_text("x")
    assert wait_until(live, lambda: handler.actions(str(target)) == ["created"])


def test_monitor_below_missing_directories(tmp_path, live):
    handler = Recorder()
    target = tmp_path / "a" / "b" / "probed.xml"
    live.AddMonitor(str(target), handler)
    settle(live, 0.1)
    (tmp_path / "a" / "b").mkdir(parents=True)
    target.write_text("x")
    assert wait_until(live, lambda: handler.actions(str(target)) == ["created"])
    write(target, "longer content")
    assert wait_until(live, lambda: handler.actions(str(target)) == ["created", "changed"])


def test_monitored_directory_removed_and_recreated(tmp_path, live):
    handler = Recorder()
    watched = tmp_path / "Plugin"
    watched.mkdir()
    (watched / "f").write_text("x")
    live.AddMonitor(str(watched), handler)
    live.handle_event_set()
    handler.clear()
    (watched / "f").unlink()
    watched.rmdir()
    assert wait_until(live, lambda: handler.actions(str(watched)) == ["deleted"])
    assert handler.actions("f") == ["deleted"]
    watched.mkdir()
    (watched / "g").write_text("y")
    assert wait_until(live, lambda: handler.actions(str(watched)) == ["deleted", "created"]
                      and handler.actions("g") == ["created"])


def test_changes_before_start_are_caught(tmp_path):
    """Monitors added before start() are live from start(); changes in between are
    reported once it runs."""
    for backend in ("inotify", "poll"):
        base = tmp_path / backend
        base.mkdir()
        (base / "old").write_text("x")
        fam = make(backend)
        handler = Recorder()
        fam.AddMonitor(str(base), handler)
        (base / "old").unlink()
        (base / "new").write_text("y")
        fam.start()
        try:
            assert wait_until(fam, lambda h=handler: h.actions("old") == ["exists", "deleted"]
                              and h.actions("new") == ["created"]), handler.got
        finally:
            fam.shutdown()


def test_burst_of_writes_is_coalesced(tmp_path):
    fam = Inotify(debounce=0.2)
    fam.start()
    try:
        target = tmp_path / "big"
        target.write_text("")
        seen = []

        class Reader:
            def HandleEvent(self, event):  # pylint: disable=invalid-name
                if event.filename == "big":
                    seen.append((event.code2str(), target.read_text()))

        fam.AddMonitor(str(tmp_path), Reader())
        fam.handle_event_set()
        # one writer, pausing longer than the debounce window: close-write ends the burst
        with open(target, "w") as fh:
            for i in range(4):
                fh.write("line %d\n" % i)
                fh.flush()
                time.sleep(0.1)
                fam.handle_event_set()
        # then many quick rewrites (open, truncate, write, close) within one window
        final = target.read_text()
        for i in range(10):
            write(target, final + "x" * i)
        final = target.read_text()
        assert wait_until(fam, lambda: seen and seen[-1][1] == final)
        settle(fam, 0.3)
        assert seen == [("exists", ""), ("changed", final)]
    finally:
        fam.shutdown()


def test_inotify_falls_back_to_polling(tmp_path, monkeypatch, caplog):
    """When watchdog cannot start (no inotify, instance limit), changes are polled."""
    from bcfg2_cherry.filemonitor import inotify

    def broken_observer():
        raise OSError(24, "inotify instance limit reached")

    monkeypatch.setattr(inotify, "Observer", broken_observer)
    fam = Inotify(poll_interval=0.05)
    handler = Recorder()
    fam.AddMonitor(str(tmp_path), handler)
    with caplog.at_level(logging.WARNING):
        fam.start()
    try:
        assert "polling" in caplog.text
        (tmp_path / "x").write_text("x")
        assert wait_until(fam, lambda: handler.actions("x") == ["created"])
        assert fam.list_watches() == []
    finally:
        fam.shutdown()


def test_ignore_globs(tmp_path, live):
    live.ignore = ["*.swp", "*~", str(tmp_path / "full-path-ignored")]
    handler = Recorder()
    (tmp_path / "old.swp").write_text("x")
    live.AddMonitor(str(tmp_path), handler)
    live.handle_event_set()
    assert [name for _, name, _ in handler.got] == [str(tmp_path), str(tmp_path)]
    for name in ("edit.swp", "backup~", ".clients.xml.abc123.new", "full-path-ignored"):
        (tmp_path / name).write_text("x")
    (tmp_path / "kept").write_text("x")
    assert wait_until(live, lambda: handler.actions("kept") == ["created"])
    settle(live, 0.15)
    assert {name for _, name, _ in handler.got} == {str(tmp_path), "kept"}
    assert live.should_ignore(Event(0, str(tmp_path / "full-path-ignored"), "changed"))
    assert live.should_ignore(Event(0, "/x/.foo.XYZ.new", "created"))
    assert not live.should_ignore(Event(0, "/x/foo.new", "created"))


def test_handler_exception_does_not_stop_handling(tmp_path, caplog):
    (tmp_path / "bad").write_text("x")
    (tmp_path / "good").write_text("x")
    fam = Pseudo()
    handler = Recorder(fail_on="bad")
    fam.AddMonitor(str(tmp_path), handler)
    with caplog.at_level(logging.ERROR):
        assert fam.handle_event_set() == 4
    assert handler.actions("good") == ["exists"]
    assert handler.got[-1][2] == "endExist"
    assert "handler failure for bad" in caplog.text and "Traceback" in caplog.text


def test_handle_event_set_holds_lock_and_counts(tmp_path):
    lock = threading.Lock()
    held = []

    class Checker:
        def HandleEvent(self, event):  # pylint: disable=invalid-name
            held.append(lock.locked())

    fam = Pseudo()
    fam.AddMonitor(str(tmp_path), Checker())
    assert fam.handle_event_set(lock) == 2 and held == [True, True]
    assert not lock.locked() and not fam.pending()
    assert fam.handle_event_set(lock) == 0


def test_several_handlers_on_one_directory(tmp_path, live):
    first, second = Recorder(), Recorder()
    id1 = live.AddMonitor(str(tmp_path), first)
    id2 = live.AddMonitor(str(tmp_path), second)
    live.handle_event_set()
    (tmp_path / "x").write_text("x")
    assert wait_until(live, lambda: first.actions("x") == ["created"] and
                      second.actions("x") == ["created"])
    assert {rid for rid, _, _ in first.got} == {id1}
    assert {rid for rid, _, _ in second.got} == {id2}


# ---------------------------------------------------------------- waiting and stopping

def test_wait_and_interval(tmp_path, live):
    start = time.monotonic()
    assert live.wait(0.1) is False
    assert 0.08 <= time.monotonic() - start < 1
    handler = Recorder()
    live.AddMonitor(str(tmp_path), handler)
    assert live.wait(0) is True
    timer = threading.Timer(0.05, lambda: (tmp_path / "t").write_text("x"))
    timer.start()
    live.handle_events_in_interval(0.4)
    timer.join()
    assert handler.actions("t") == ["created"]


@pytest.mark.parametrize("backend", ["inotify", "poll"])
def test_shutdown_is_prompt_and_idempotent(tmp_path, backend):
    fam = Inotify() if backend == "inotify" else Poll(interval=30)
    for i in range(5):
        (tmp_path / str(i)).mkdir()
        fam.AddMonitor(str(tmp_path / str(i)), Recorder())
    fam.start()
    fam.handle_event_set()
    threads = threading.active_count()
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(fam.wait(30)))
    waiter.start()
    time.sleep(0.05)
    start = time.monotonic()
    fam.shutdown()
    waiter.join(2)
    assert time.monotonic() - start < 2
    assert woke == [False]
    fam.shutdown()
    assert threading.active_count() < threads
    if backend == "inotify":
        assert fam.list_watches() == []


def test_inotify_rmi_lists(tmp_path):
    fam = Inotify()
    (tmp_path / "d").mkdir()
    fam.AddMonitor(str(tmp_path / "d"), Recorder())
    fam.AddMonitor(str(tmp_path / "f.xml"), Recorder())
    fam.start()
    try:
        assert fam.list_paths() == [str(tmp_path / "d"), str(tmp_path / "f.xml")]
        assert fam.list_watches() == [str(tmp_path), str(tmp_path / "d")]
    finally:
        fam.shutdown()


# ---------------------------------------------------------------- recursive roots

def inotify_instances():
    """How many inotify instances this process holds (None where /proc cannot tell)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    count = 0
    for fd in fds:
        try:
            count += "inotify" in os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass
    return count


def test_recursive_root_costs_a_handful_of_threads(tmp_path):
    """300 monitored directories below the repository: one recursive watch, one
    inotify instance, a few threads; changes deep down and in a directory created
    after start are reported, and so are changes outside the root."""
    repo = tmp_path / "repo"
    dirs = [repo / "Cfg" / "etc" / ("d%02d" % (i // 10)) / ("f%d" % i) for i in range(300)]
    for directory in dirs:
        directory.mkdir(parents=True)
        (directory / (directory.name + ".xml")).write_text("x")
    (repo / ".git" / "objects").mkdir(parents=True)
    etc = tmp_path / "etc"
    etc.mkdir()
    conf = etc / "bcfg2.conf"
    conf.write_text("[server]\n")
    fam = Inotify(debounce=0.05, recursive_roots=[str(repo) + "/"])
    assert fam.recursive_roots == (str(repo),)
    handler = Recorder()
    ids = {}
    for directory in dirs[:150]:  # the core adds most monitors before start()
        ids[directory] = fam.AddMonitor(str(directory), handler)
    threads, instances = threading.active_count(), inotify_instances()
    fam.start()
    try:
        for directory in dirs[150:]:
            ids[directory] = fam.AddMonitor(str(directory), handler)
        conf_id = fam.AddMonitor(str(conf), handler)
        late = repo / "Cfg" / "etc" / "new" / "late"
        late_id = fam.AddMonitor(str(late), handler)
        fam.handle_event_set()
        handler.clear()
        # observer, its inotify reader (watchdog 7), one emitter for the repository
        # and one for etc/ (two threads each before watchdog 7), our worker
        assert threading.active_count() - threads <= 6
        assert len(fam._observer.emitters) == 2  # pylint: disable=protected-access
        if instances is not None:
            assert inotify_instances() - instances <= 1
        assert set(fam.list_watches()) >= {str(d) for d in dirs} | {str(etc)}
        assert len(fam.list_paths()) == 302

        deep = dirs[-1]
        target = deep / "new.xml"
        write(target, "first")
        assert wait_until(fam, lambda: (ids[deep], "new.xml", "created") in handler.got)
        write(target, "second, longer")
        assert wait_until(fam, lambda: (ids[deep], "new.xml", "changed") in handler.got)
        target.unlink()
        assert wait_until(fam, lambda: (ids[deep], "new.xml", "deleted") in handler.got)

        late.mkdir(parents=True)
        write(late / "entry", "x")
        assert wait_until(fam, lambda: (late_id, "entry", "created") in handler.got)
        assert (late_id, str(late), "created") in handler.got
        write(late / "entry", "changed content")
        assert wait_until(fam, lambda: (late_id, "entry", "changed") in handler.got)
        (late / "entry").unlink()
        assert wait_until(fam, lambda: (late_id, "entry", "deleted") in handler.got)

        write(conf, "[server]\nrepository = /x\n")
        assert wait_until(fam, lambda: (conf_id, str(conf), "changed") in handler.got)

        # what no monitor covers stays quiet, below the root or not
        (repo / ".git" / "objects" / "ab").write_text("blob")
        (repo / "Cfg" / "etc" / "d00" / "stray").write_text("x")
        (etc / "other.conf").write_text("x")
        settle(fam, 0.2)
        assert threading.active_count() - threads <= 6
        names = {name for _, name, _ in handler.got}
        assert names == {"new.xml", str(late), "entry", str(conf)}, names
        assert [action for rid, _, action in handler.got if rid == ids[deep]] == \
            ["created", "changed", "deleted"]
    finally:
        fam.shutdown()
    assert threading.active_count() <= threads


def test_recursive_root_is_watched_lazily(tmp_path):
    """The root's watch is made when a directory below it is first watched (here
    only once the repository appears), and dropped when none is left."""
    repo = tmp_path / "repo"
    fam = Inotify(debounce=0.05, recursive_roots=[repo])
    handler = Recorder()
    plugin = repo / "Bundler"
    plugin_id = fam.AddMonitor(str(plugin), handler)
    fam.start()
    try:
        observer = fam._observer  # pylint: disable=protected-access
        assert fam.list_watches() == [str(tmp_path)] and len(observer.emitters) == 1
        plugin.mkdir(parents=True)
        (plugin / "base.xml").write_text("<Bundle/>")
        assert wait_until(fam, lambda: (plugin_id, "base.xml", "created") in handler.got)
        assert fam.list_watches() == [str(repo), str(plugin)]
        assert len(observer.emitters) == 1  # the root's, tmp_path's is no longer needed
        for i in range(20):
            (repo / ("P%d" % i)).mkdir()
            fam.AddMonitor(str(repo / ("P%d" % i)), handler)
        assert len(observer.emitters) == 1
        # the repository goes: its directories are watched from outside it again
        handler.clear()
        for i in range(20):
            (repo / ("P%d" % i)).rmdir()
        (plugin / "base.xml").unlink()
        plugin.rmdir()
        repo.rmdir()
        assert wait_until(fam, lambda: (plugin_id, str(plugin), "deleted") in handler.got)
        assert wait_until(fam, lambda: fam.list_watches() == [str(tmp_path)])
        plugin.mkdir(parents=True)
        (plugin / "again.xml").write_text("<Bundle/>")
        assert wait_until(fam, lambda: (plugin_id, "again.xml", "created") in handler.got)
        assert len(observer.emitters) == 1
    finally:
        fam.shutdown()


def test_recursive_root_through_symlink(tmp_path):
    """A repository path that is a symbolic link is watched through its target, and
    events still name the paths the monitors asked for."""
    (tmp_path / "real" / "Cfg").mkdir(parents=True)
    repo = tmp_path / "repo"
    repo.symlink_to(tmp_path / "real")
    fam = Inotify(debounce=0.05, recursive_roots=[repo])
    handler = Recorder()
    cfg_id = fam.AddMonitor(str(repo / "Cfg"), handler)
    fam.start()
    try:
        fam.handle_event_set()
        (tmp_path / "real" / "Cfg" / "motd").mkdir()
        assert wait_until(fam, lambda: (cfg_id, "motd", "created") in handler.got)
        assert handler.got[0] == (cfg_id, str(repo / "Cfg"), "exists")
    finally:
        fam.shutdown()


@pytest.mark.parametrize("backend", ["inotify", "poll", "pseudo"])
def test_every_backend_accepts_recursive_roots(tmp_path, backend):
    fam = load(backend)(ignore=["*~"], debug=False, recursive_roots=[str(tmp_path)])
    handler = Recorder()
    fam.AddMonitor(str(tmp_path), handler)
    fam.start()
    try:
        assert fam.handle_event_set() == 2
    finally:
        fam.shutdown()


def test_recursive_root_that_cannot_be_watched_is_polled(tmp_path, monkeypatch, caplog):
    """If the recursive watch fails (watch limit), the directories below the root are
    polled, with one warning, and directories outside it keep their own watch."""
    repo = tmp_path / "repo"
    for name in ("A", "B"):
        (repo / name).mkdir(parents=True)
    fam = Inotify(debounce=0.05, poll_interval=0.05, recursive_roots=[repo])
    original = Inotify._schedule  # pylint: disable=protected-access

    def schedule(self, directory, handler=None, recursive=False):
        if recursive:
            raise OSError(28, "inotify watch limit reached")
        return original(self, directory, handler, recursive)

    monkeypatch.setattr(Inotify, "_schedule", schedule)
    handler = Recorder()
    a_id = fam.AddMonitor(str(repo / "A"), handler)
    fam.AddMonitor(str(repo / "B"), handler)
    conf = tmp_path / "etc" / "bcfg2.conf"
    conf.parent.mkdir()
    conf_id = fam.AddMonitor(str(conf), handler)
    with caplog.at_level(logging.WARNING):
        fam.start()
    try:
        assert caplog.text.count("recursively") == 1
        assert fam.list_watches() == [str(conf.parent)]
        (repo / "A" / "x").write_text("x")
        assert wait_until(fam, lambda: (a_id, "x", "created") in handler.got)
        conf.write_text("[server]\n")
        assert wait_until(fam, lambda: (conf_id, str(conf), "created") in handler.got)
    finally:
        fam.shutdown()
