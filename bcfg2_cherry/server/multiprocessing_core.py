"""The multiprocessing network core: the builtin core in the parent answers every call
except GetConfig, which ``ChildCore`` processes render, one configuration at a time
each.

Children come from a fork server started before the parent binds its socket or starts
a thread, so every child (replacements too) starts from a clean, single-threaded
process. Each child is a full Core with its own plugins, file monitor and caches;
every cache expiry in the parent (metadata, probe data, ...) is published to all of
them, in order, ahead of any later GetConfig. A child that dies is replaced, and the
GetConfig it was rendering is retried once on another child, else answered with a
Fault. Parent and children talk over one pipe per child (``RPCQueue``).
"""
import collections
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from multiprocessing import connection as mp_connection

from bcfg2_cherry import cache, statistics
from bcfg2_cherry.options import Settings
from bcfg2_cherry.plugin.base import Debuggable
from bcfg2_cherry.server.builtin_core import BuiltinCore
from bcfg2_cherry.server.core import ClientAddress, Core, exposed
from bcfg2_cherry.server.errors import (
    GENERIC_FAULT, INTERNAL_ERROR, METHOD_NOT_FOUND, Fault)

__all__ = ["MultiprocessingCore", "ChildCore", "RPCQueue", "DualEvent", "ChildDied",
           "ChildError"]

logger = logging.getLogger(__name__)

_CONTEXT = None


def mp_context():
    """The multiprocessing context children are started from: a fork server (with
    this module preloaded), so no child inherits the parent's threads or locks."""
    global _CONTEXT  # pylint: disable=global-statement
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        _CONTEXT = ctx
    return _CONTEXT



def _drain(conn):
    """Read and drop everything waiting on a wake-up pipe end."""
    try:
        while conn.poll():
            conn.recv_bytes()
    except (OSError, EOFError):
        pass

class ChildDied(Exception):
    """The child process an RPC was sent to went away before it answered."""


class ChildError(Exception):
    """A child's RPC raised something other than a Fault; carries its ``fault_code``
    so the dispatch path answers exactly as the builtin core would."""

    def __init__(self, fault_code, message):
        Exception.__init__(self, message)
        self.fault_code = fault_code


# ---------------------------------------------------------------------- messaging

class _Channel:
    """The parent's end of one child's pipe.

    ``slock`` serializes writers. Until the child says it is ready the reader thread
    watches the pipe; after that, the one caller holding ``xlock`` (an RPC waiting for
    its answer) reads it itself, so an answer reaches its caller without a hop
    through another thread.
    """

    def __init__(self, name, conn):
        self.name = name
        self.conn = conn
        self.slock = threading.Lock()
        self.xlock = threading.Lock()
        self.ready = False
        self.closed = False
        self._conn_closed = False

    def send(self, message):
        if self.closed:
            raise ChildDied(self.name)
        with self.slock:
            try:
                self.conn.send(message)
            except (OSError, EOFError, ValueError) as err:
                raise ChildDied("%s: %s" % (self.name, err)) from None

    def close_conn(self):
        """Close the pipe (only by whoever reads it: the reader or the RPC caller)."""
        if not self._conn_closed:
            self._conn_closed = True
            try:
                self.conn.close()
            except OSError:
                pass


class RPCQueue(Debuggable):
    """Calls into child processes: ``publish`` to all (no answer), ``rpc`` to one
    (waits for its answer), over one pipe per subscriber.

    A child answers its RPCs one at a time, in order; the caller of ``rpc`` reads the
    answer off the pipe itself and notices at once when the child dies (ChildDied).
    A reader thread only watches children that have not said ``("ready", pid)`` yet:
    ``on_message(name, message)`` gets that message, ``on_close(name)`` is told when
    a pipe closes.
    """

    #: how often waiting callers and the reader thread look at the stop flags
    poll_wait = 0.5

    def __init__(self, context=None):
        Debuggable.__init__(self)
        self._ctx = context or mp_context()
        self._channels = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._terminate = threading.Event()
        self._wake_r = self._wake_w = None  # made by start(): after daemonizing
        self._to_close = []
        self._reader = None
        self.on_message = None
        self.on_close = None

    # -- subscribers

    def subscribe(self, name):
        """Add a subscriber; returns the connection the subscriber (child) reads its
        calls from and writes its answers to. Replaces a subscriber of that name."""
        self.unsubscribe(name)
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        with self._lock:
            self._channels[name] = _Channel(name, parent_end)
        self._wake()
        return child_end

    add_subscriber = subscribe

    def unsubscribe(self, name):
        """Drop a subscriber; a call waiting for its answer fails with ChildDied."""
        with self._lock:
            channel = self._channels.pop(name, None)
        if channel is not None:
            self._retire(channel)

    def _retire(self, channel):
        channel.closed = True
        if not channel.ready:
            with self._lock:
                self._to_close.append(channel)
            self._wake()
        elif channel.xlock.acquire(blocking=False):
            try:
                channel.close_conn()
            finally:
                channel.xlock.release()
        # else: the RPC caller sees ``closed`` within poll_wait and closes the pipe

    def names(self):
        """Names of the subscribers that are ready for RPCs."""
        with self._lock:
            return [name for name, ch in self._channels.items() if ch.ready]

    def start(self):
        """Start the reader thread (after the children are started)."""
        if self._reader is None:
            self._wake_r, self._wake_w = mp_connection.Pipe(duplex=False)
            self._reader = threading.Thread(name="RPCQueueReader", target=self._read_loop,
                                            daemon=True)
            self._reader.start()

    # -- calls

    def publish(self, method, args=None, kwargs=None):
        """Send a call to every subscriber; nobody answers."""
        message = (None, method, list(args or ()), dict(kwargs or {}))
        with self._lock:
            channels = list(self._channels.values())
        for channel in channels:
            try:
                channel.send(message)
            except ChildDied:
                self.debug_log("Not publishing %s to %s: gone", method, channel.name)

    def rpc(self, dest, method, args=None, kwargs=None, timeout=None):
        """Call ``method`` in subscriber ``dest`` and return its answer.

        Raises Fault (the child's Fault), ChildError (any other exception there),
        ChildDied (the child went away first, or is not ready) or TimeoutError.
        """
        with self._lock:
            channel = self._channels.get(dest)
        if channel is None or channel.closed or not channel.ready:
            raise ChildDied("%s is not available" % dest)
        deadline = None if timeout is None else time.monotonic() + timeout
        if not channel.xlock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("%s is busy" % dest)
        try:
            call_id = next(self._ids)
            channel.send((call_id, method, list(args or ()), dict(kwargs or {})))
            while True:
                if channel.closed or self._terminate.is_set():
                    raise ChildDied("%s was stopped" % dest)
                wait = self.poll_wait
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError("%s did not answer %s within %ss"
                                           % (dest, method, timeout))
                try:
                    if not channel.conn.poll(wait):
                        continue
                    message = channel.conn.recv()
                except (EOFError, OSError):
                    self._closed(channel)
                    raise ChildDied("%s exited" % dest) from None
                except Exception as err:  # pylint: disable=broad-except
                    raise ChildError(INTERNAL_ERROR, "unreadable answer from %s: %s"
                                     % (dest, err)) from None
                if message[0] in ("result", "error") and message[1] == call_id:
                    return self._answer(message)
                self.debug_log("Dropping a stale message from %s", dest)
        finally:
            if channel.closed:
                channel.close_conn()
            channel.xlock.release()

    @staticmethod
    def _answer(message):
        if message[0] == "result":
            return message[2]
        if message[4]:
            raise Fault(message[2], message[3])
        raise ChildError(message[2], message[3])

    def stop_all(self):
        """Ask every subscriber to stop (after the calls already sent)."""
        with self._lock:
            channels = list(self._channels.values())
        for channel in channels:
            try:
                channel.send(None)
            except ChildDied:
                pass

    def close(self):
        """Close queues and connections; waiting calls fail with ChildDied."""
        self._terminate.set()
        self._wake()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(2)
        with self._lock:
            channels = list(self._channels.values())
            self._channels = {}
            leftovers, self._to_close = self._to_close, []
        for channel in channels:
            channel.ready = True  # the reader is gone: close like a ready channel
            self._retire(channel)
        for channel in leftovers:
            channel.close_conn()
        for conn in (self._wake_r, self._wake_w):
            try:
                if conn is not None:
                    conn.close()
            except OSError:
                pass

    # -- the reader thread (children that are starting)

    def _wake(self):
        try:
            if self._wake_w is not None:
                self._wake_w.send_bytes(b"x")
        except OSError:
            pass

    def _read_loop(self):
        while not self._terminate.is_set():
            with self._lock:
                closing, self._to_close = self._to_close, []
                by_conn = {ch.conn: ch for ch in self._channels.values()
                           if not ch.ready and not ch.closed}
            for channel in closing:
                channel.close_conn()
            try:
                ready = mp_connection.wait(list(by_conn) + [self._wake_r], self.poll_wait)
            except OSError:
                continue
            for conn in ready:
                if conn is self._wake_r:
                    _drain(self._wake_r)
                    continue
                channel = by_conn[conn]
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    self._closed(channel)
                    channel.close_conn()
                    continue
                except Exception:  # pylint: disable=broad-except
                    logger.error("Unreadable message from %s", channel.name, exc_info=True)
                    continue
                if message[0] == "ready":
                    channel.ready = True
                if self.on_message is not None:
                    try:
                        self.on_message(channel.name, message)
                    except Exception:  # pylint: disable=broad-except
                        logger.exception("on_message(%s) failed", channel.name)

    def _closed(self, channel):
        """A pipe reached its end (the child exited)."""
        channel.closed = True
        with self._lock:
            if self._channels.get(channel.name) is channel:
                del self._channels[channel.name]
        if self.on_close is not None and not self._terminate.is_set():
            try:
                self.on_close(channel.name)
            except Exception:  # pylint: disable=broad-except
                logger.exception("on_close(%s) failed", channel.name)


class DualEvent:
    """A threading.Event that also sets a multiprocessing.Event, so threads of this
    process and child processes see one stop flag. ``wait`` waits on the thread one.

    Without ``multiprocessing_event`` the process-shared one is made when first asked
    for (``multiprocessing_event``), so a core can be created before it daemonizes.
    """

    def __init__(self, threading_event=None, multiprocessing_event=None):
        self._threading_event = threading_event or threading.Event()
        self._multiproc_event = multiprocessing_event
        self._lock = threading.Lock()
        if threading_event is not None or multiprocessing_event is not None:
            self.clear()

    @property
    def multiprocessing_event(self):
        """The multiprocessing.Event to hand to child processes."""
        with self._lock:
            if self._multiproc_event is None:
                self._multiproc_event = mp_context().Event()
                if self._threading_event.is_set():
                    self._multiproc_event.set()
            return self._multiproc_event

    def is_set(self):
        """Return true if and only if the internal flag is true."""
        return self._threading_event.is_set()

    isSet = is_set

    def set(self):
        """Set the internal flag to true."""
        with self._lock:
            self._threading_event.set()
            if self._multiproc_event is not None:
                self._multiproc_event.set()

    def clear(self):
        """Reset the internal flag to false."""
        with self._lock:
            self._threading_event.clear()
            if self._multiproc_event is not None:
                self._multiproc_event.clear()

    def wait(self, timeout=None):
        """Block until the internal flag is true, or until ``timeout`` passes."""
        return self._threading_event.wait(timeout=timeout)


# ---------------------------------------------------------------------- the child

class _ChildStop:
    """A child's stop flag: its own (set by its shutdown) or the parent's shared one."""

    def __init__(self, shared=None):
        self.local = threading.Event()
        self.shared = shared

    def is_set(self):
        return self.local.is_set() or (self.shared is not None and self.shared.is_set())

    isSet = is_set

    def set(self):
        self.local.set()

    def clear(self):
        self.local.clear()

    def wait(self, timeout=None):
        return self.local.wait(timeout) or self.is_set()


class ChildCore(Core):
    """A child process of the MultiprocessingCore: a full Core (plugins, file monitor,
    caches) that renders configurations for the parent, one at a time, and obeys the
    parent's cache expiries, debug switches and ``__child_rmi__`` calls, in the order
    they were sent.
    """

    #: How long to wait for a command before looking at the stop flag again. Commands
    #: are handled as soon as they arrive; this only bounds how late a child notices a
    #: stop without a stop message (e.g. the parent was killed).
    poll_wait = 0.5
    #: longest wait for the file monitor's pending events before a render
    sync_timeout = 5.0

    def __init__(self, name, rpc_q, terminate, setup):
        Core.__init__(self, setup)
        #: The name of this child
        self.name = name
        #: The connection used for RPC communication with the parent
        self.rpc_q = rpc_q
        #: The flag monitored to determine when this child should shut down (the
        #: parent's multiprocessing.Event, or this child's own shutdown)
        self.terminate = _ChildStop(terminate)
        self.perflog_thread = None
        self._rmi = {}

    def _run(self):
        return True

    def _block(self):
        """Handle the parent's commands until told to stop or the parent is gone."""
        self._rmi = self._get_rmi()
        try:
            self.rpc_q.send(("ready", os.getpid()))
            while not self.terminate.is_set():
                if not self.rpc_q.poll(self.poll_wait):
                    continue
                message = self.rpc_q.recv()
                if message is None:
                    break
                self._dispatch(*message)
        except (EOFError, OSError):
            self.logger.debug("%s: the parent has gone away", self.name)
        finally:
            self.shutdown()

    def _resolve(self, method):
        if "." in method:
            func = self._rmi.get(method)
        else:
            func = getattr(self, method, None)
            if func is not None and not getattr(func, "exposed", False):
                func = None
        if func is None:
            raise Fault(METHOD_NOT_FOUND, "Unknown method %s" % method)
        return func

    def _dispatch(self, call_id, method, args, kwargs):
        """Run one command; answer it when the parent waits for an answer."""
        try:
            reply = ("result", call_id, self._resolve(method)(*args, **kwargs))
        except Fault as fault:
            reply = ("error", call_id, fault.faultCode, fault.faultString, True)
        except Exception as err:  # pylint: disable=broad-except
            self.logger.error("%s: %s failed", self.name, method, exc_info=True)
            reply = ("error", call_id, getattr(err, "fault_code", GENERIC_FAULT),
                     str(err) or err.__class__.__name__, False)
        if call_id is None:
            return
        try:
            self.rpc_q.send(reply)
        except (OSError, EOFError):
            raise
        except Exception as err:  # pylint: disable=broad-except  (unpicklable result)
            self.logger.error("%s: cannot send the result of %s", self.name, method,
                              exc_info=True)
            self.rpc_q.send(("error", call_id, INTERNAL_ERROR,
                             "%s returned an unsendable result: %s" % (method, err),
                             True))

    def _get_rmi(self):
        """``{"Plugin.child_name": method}`` for every ``__child_rmi__`` entry."""
        rmi = {}
        for pname, obj in self._get_rmi_objects().items():
            for crmi in getattr(obj, "__child_rmi__", ()):
                mname = crmi[1] if isinstance(crmi, tuple) else crmi
                func = getattr(obj, mname, None)
                if callable(func):
                    rmi["%s.%s" % (pname, mname)] = func
        return rmi

    def _sync_repository(self):
        """Catch up with the repository before a render: the Metadata plugin's
        ``update_client_list`` (when it has one), then any queued file events."""
        update = getattr(self.metadata, "update_client_list", None)
        if update is not None:
            try:
                update()
            except Exception:  # pylint: disable=broad-except
                self.logger.error("%s: update_client_list failed", self.name,
                                  exc_info=True)
        if self.fam.pending():
            deadline = time.monotonic() + self.sync_timeout
            while self.fam.pending() and time.monotonic() < deadline:
                time.sleep(0.005)
            with self.lock:  # a batch may still be in progress
                pass

    @exposed
    def expire_cache(self, *tags, **kwargs):
        """Expire cached data (published by the parent for each of its expiries)."""
        cache.expire(*tags, exact=kwargs.pop("exact", False))

    @exposed
    def GetConfig(self, address):  # pylint: disable=invalid-name
        """Render the configuration for a client: ``address`` carries the client name
        the parent authenticated (a bare host name is accepted too)."""
        if isinstance(address, str):
            address = ClientAddress(("", 0), address)
        self._sync_repository()
        return Core.GetConfig(self, address)


def _child_main(name, conn, terminate, config_file, overrides, log_setup):
    """Entry point of a child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    statistics.stats.reset()
    level, console = log_setup
    try:
        settings = Settings(config_file, overrides)
        from bcfg2_cherry.cli.common import setup_logging
        setup_logging(settings, to_console=console)
        logging.getLogger().setLevel(level)
        core = ChildCore(name, conn, terminate, settings)
    except Exception:  # pylint: disable=broad-except
        logger.exception("%s cannot start", name)
        sys.exit(1)
    try:
        core.run()
    except Exception:  # pylint: disable=broad-except
        logger.exception("%s failed", name)
        sys.exit(1)


def _log_setup():
    """What a child needs to log like this process: the root level and whether it
    logs to the console."""
    root = logging.getLogger()
    console = any(isinstance(h, logging.StreamHandler) and
                  getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)
                  for h in root.handlers)
    return root.level, console


# ---------------------------------------------------------------------- the parent

class MultiprocessingCore(BuiltinCore):
    """A builtin core that delegates rendering configurations to ``ChildCore``
    processes; every other call is answered by the parent.
    """

    name = "MultiprocessingCore"
    #: How long to wait for a child process to shut down cleanly before it is
    #: terminated (children normally stop within a fraction of a second).
    shutdown_timeout = 10.0
    #: How long serving waits for the children to finish loading the repository.
    child_start_timeout = 120.0
    #: How long a GetConfig waits for a free child before it gives up with a Fault.
    child_wait_timeout = 300.0
    #: A child slot that dies this many times in a row before it is ready is given up.
    max_start_failures = 3
    #: How long get_statistics waits for each child.
    statistics_timeout = 30.0
    #: How often the supervisor looks at the stop flag.
    poll_wait = 0.5

    def __init__(self, setup):
        BuiltinCore.__init__(self, setup)
        self._ctx = mp_context()
        #: The flag that indicates when to stop child threads and processes
        self.terminate = DualEvent(threading_event=self.terminate)
        #: The RPCQueue used to send or publish commands to children
        self.rpc_q = RPCQueue(self._ctx)
        self.rpc_q.on_message = self._child_message
        self.rpc_q.on_close = self._child_gone
        #: ``(name, generation)`` of each child that is free to render a configuration:
        #: taken while it renders, put back when done, so a busy child is never handed
        #: a second configuration
        self.available_children = queue.Queue()
        #: requests waiting for a child, oldest first: a child that becomes free goes
        #: straight to the oldest, so waiting is first come, first served
        self._waiters = collections.deque()
        #: the names of the child slots (``Child-0`` ...)
        self.children = ["Child-%d" % num for num in range(max(1, int(setup.children or 1)))]
        self._procs = {}       # name -> (Process, generation)
        self._generation = {}  # name -> current generation
        self._ready = {}       # name -> generation that said it is ready
        self._busy = {}        # name -> client being rendered
        self._failures = {}    # name -> start failures in a row
        self._given_up = set()  # slots whose child failed to start too often
        self._state_lock = threading.Lock()
        self._children_ready = threading.Condition(self._state_lock)
        self._supervisor = None
        self._wake_r = self._wake_w = None  # made by _run: after daemonizing
        self._children_stopped = False

    def __str__(self):
        return "%s(%s; %d children)" % (self.__class__.__name__, self.setup.server_url,
                                        len(self.children))

    @property
    def pipes(self):
        """child name -> the parent's end of its pipe"""
        with self.rpc_q._lock:  # pylint: disable=protected-access
            return {name: ch.conn for name, ch in
                    self.rpc_q._channels.items()}  # pylint: disable=protected-access

    # ------------------------------------------------------------------ children

    def _start_child(self, name):
        with self._state_lock:
            generation = self._generation.get(name, 0) + 1
            self._generation[name] = generation
        child_end = self.rpc_q.subscribe(name)
        proc = self._ctx.Process(
            target=_child_main, name=name, daemon=True,
            args=(name, child_end, self.terminate.multiprocessing_event,
                  self.setup.config_file, dict(self.setup.overrides), _log_setup()))
        try:
            proc.start()
        finally:
            child_end.close()
        with self._state_lock:
            self._procs[name] = (proc, generation)
        self.logger.debug("Started %s (pid %s)", name, proc.pid)

    def _child_message(self, name, message):
        if message[0] != "ready":
            self.logger.warning("Unexpected message from %s: %r", name, message[:1])
            return
        with self._state_lock:
            proc_gen = self._procs.get(name, (None, self._generation.get(name)))[1]
            self._ready[name] = proc_gen
            self._failures[name] = 0
            self._children_ready.notify_all()
            self._hand_out(name, proc_gen)
        self.logger.info("%s (pid %s) is ready", name, message[1])

    def _child_gone(self, name):
        with self._state_lock:
            self._ready.pop(name, None)

    def _supervise(self):
        """Replace children that die (unless we are stopping)."""
        while not self.terminate.is_set():
            with self._state_lock:
                procs = {proc.sentinel: (name, proc, gen)
                         for name, (proc, gen) in self._procs.items()}
            try:
                ready = mp_connection.wait(list(procs) + [self._wake_r], self.poll_wait)
            except OSError:
                continue
            for sentinel in ready:
                if sentinel is self._wake_r:
                    _drain(self._wake_r)
                    continue
                if self.terminate.is_set():
                    return
                name, proc, gen = procs[sentinel]
                self._replace(name, proc, gen)

    def _replace(self, name, proc, gen):
        proc.join(1)
        with self._state_lock:
            if self._procs.get(name, (None,))[0] is not proc:
                return
            was_ready = self._ready.pop(name, None) == gen
            failures = 0 if was_ready else self._failures.get(name, 0) + 1
            self._failures[name] = failures
            del self._procs[name]
        self.rpc_q.unsubscribe(name)
        if failures >= self.max_start_failures:
            self.logger.error("%s failed to start %d times; giving it up", name, failures)
            with self._state_lock:
                self._given_up.add(name)
                self._children_ready.notify_all()
                self._wake_waiters()
            return
        self.logger.error("%s (pid %s) exited with status %s; starting a new one", name,
                          proc.pid, proc.exitcode)
        if failures:
            self.terminate.wait(min(5.0, 0.5 * 2 ** failures))
            if self.terminate.is_set():
                return
        try:
            self._start_child(name)
        except Exception:  # pylint: disable=broad-except
            self.logger.exception("Cannot start a new %s", name)

    def wait_for_children(self, timeout=None):
        """Block until every child slot is ready (or given up); True if all ready."""
        deadline = time.monotonic() + (self.child_start_timeout if timeout is None
                                       else timeout)
        with self._state_lock:
            while True:
                ready = sum(1 for name, (_, gen) in self._procs.items()
                            if self._ready.get(name) == gen)
                if ready + len(self._given_up) >= len(self.children) or \
                        self.terminate.is_set():
                    return ready == len(self.children)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._children_ready.wait(min(remaining, self.poll_wait))

    def child_pids(self):
        """``{child name: pid}`` of the running children."""
        with self._state_lock:
            return {name: proc.pid for name, (proc, _) in self._procs.items()}

    def busy_children(self):
        """``{child name: client}`` of the children rendering right now."""
        with self._state_lock:
            return dict(self._busy)

    def _hand_out(self, name, gen):
        """A child is free: to the oldest waiting request, else back to
        ``available_children`` (call with ``_state_lock`` held)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter["child"] is None and not waiter["gone"]:
                waiter["child"] = (name, gen)
                self._busy[name] = waiter["client"]
                waiter["event"].set()
                return
        self.available_children.put((name, gen))

    def _wake_waiters(self):
        """Wake every waiting request to look at the state again (lock held)."""
        for waiter in self._waiters:
            waiter["event"].set()

    def _no_child_reason(self):
        """Why no child will come (lock held), or None."""
        if self.terminate.is_set():
            return "the server is shutting down"
        if len(self._given_up) >= len(self.children):
            return "no worker process is available"
        return None

    def _acquire_child(self, client):
        """A free, live child, ``(name, generation)``, marked busy; waiting requests
        are served first come, first served. Fault when none will come."""
        deadline = time.monotonic() + self.child_wait_timeout
        with self._state_lock:
            while True:
                try:
                    name, gen = self.available_children.get_nowait()
                except queue.Empty:
                    break
                if self._ready.get(name) == gen and name not in self._busy:
                    self._busy[name] = client
                    return name, gen
            waiter = {"event": threading.Event(), "child": None, "client": client,
                      "gone": False}
            self._waiters.append(waiter)
        while True:
            waiter["event"].wait(max(0.0, min(5.0, deadline - time.monotonic())))
            with self._state_lock:
                if waiter["child"] is not None:
                    return waiter["child"]
                reason = self._no_child_reason()
                if reason is None and time.monotonic() > deadline:
                    reason = "no worker process became free in %ss" % self.child_wait_timeout
                if reason is not None:
                    waiter["gone"] = True
                    break
                waiter["event"].clear()
        self.critical_error("Unable to build the configuration of %s: %s"
                            % (client, reason))

    def _release_child(self, name, gen, alive=True):
        with self._state_lock:
            self._busy.pop(name, None)
            if not alive:
                if self._ready.get(name) == gen:
                    del self._ready[name]
                return
            if self._ready.get(name) == gen:
                self._hand_out(name, gen)

    def _stop_children(self):
        """Stop every child: a stop message, then wait, then terminate; returns
        promptly (children stop within a fraction of a second)."""
        with self._state_lock:
            if self._children_stopped:
                return
            self._children_stopped = True
        cache.remove_expire_hook(self.cache_dispatch)
        self.terminate.set()
        with self._state_lock:
            self._wake_waiters()
        self.rpc_q.stop_all()
        try:
            if self._wake_w is not None:
                self._wake_w.send_bytes(b"x")
        except OSError:
            pass
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(2)
        with self._state_lock:
            procs = [proc for proc, _ in self._procs.values()]
        deadline = time.monotonic() + self.shutdown_timeout
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.is_alive():
                self.logger.error("Waited %ss for %s to stop; terminating it",
                                  self.shutdown_timeout, proc.name)
                proc.terminate()
                proc.join(1)
                if proc.is_alive():
                    proc.kill()
                    proc.join(1)
        self.rpc_q.close()
        for conn in (self._wake_r, self._wake_w):
            if conn is not None:
                try:
                    conn.close()
                except OSError:
                    pass
        self.logger.info("All children stopped")

    # ------------------------------------------------------------------ life cycle

    def _run(self):
        """Start the children, then (like the builtin core) start listening."""
        cache.add_expire_hook(self.cache_dispatch)
        self._wake_r, self._wake_w = mp_connection.Pipe(duplex=False)
        try:
            for name in self.children:
                self._start_child(name)
        except Exception as err:  # pylint: disable=broad-except
            self.logger.error("Cannot start the children: %s", err, exc_info=True)
            return False
        self.rpc_q.start()
        self._supervisor = threading.Thread(name="ChildSupervisor", target=self._supervise,
                                            daemon=True)
        self._supervisor.start()
        return BuiltinCore._run(self)

    def _start(self):
        BuiltinCore._start(self)
        if not self.wait_for_children():
            self.logger.error("Not every child is ready after %ss; serving anyway",
                              self.child_start_timeout)

    def shutdown(self):
        BuiltinCore.shutdown(self)
        self._stop_children()

    # ------------------------------------------------------------------ cache and RMI

    def cache_dispatch(self, tags, exact, _=None):
        """Publish cache expiration events to child nodes."""
        self.rpc_q.publish("expire_cache", args=list(tags), kwargs={"exact": exact})

    def _get_rmi(self):
        rmi = BuiltinCore._get_rmi(self)
        for pname, obj in self._get_rmi_objects().items():
            for crmi in getattr(obj, "__child_rmi__", ()):
                parent_name, child_name = crmi if isinstance(crmi, tuple) else (crmi, crmi)
                method = "%s.%s" % (pname, parent_name)
                if method in rmi:
                    rmi[method] = self._child_rmi_wrapper(
                        rmi[method], "%s.%s" % (pname, child_name))
        return rmi

    def _child_rmi_wrapper(self, parent_rmi, child_rmi):
        """A callable that publishes an RMI call to the children and runs it here."""
        def inner(*args, **kwargs):
            self.rpc_q.publish(child_rmi, args=args, kwargs=kwargs)
            return parent_rmi(*args, **kwargs)
        inner.__name__ = getattr(parent_rmi, "__name__", child_rmi)
        inner.__doc__ = getattr(parent_rmi, "__doc__", None)
        inner.__wrapped__ = parent_rmi
        return inner

    # ------------------------------------------------------------------ exposed

    @exposed
    def set_debug(self, address, debug):  # noqa: D102 (same doc as Core's)
        self.rpc_q.set_debug(debug)
        self.rpc_q.publish("set_debug", args=[tuple(address), debug])
        return BuiltinCore.set_debug(self, address, debug)

    set_debug.__doc__ = Core.set_debug.__doc__

    @exposed
    def GetConfig(self, address):  # pylint: disable=invalid-name
        client = self.resolve_client(address, metadata=False)[0]
        caddr = ClientAddress(address, client)
        for attempt in (1, 2):
            name, gen = self._acquire_child(client)
            alive = True
            try:
                self.logger.debug("Building the configuration of %s on %s", client, name)
                return self.rpc_q.rpc(name, "GetConfig", args=[caddr])
            except ChildDied:
                alive = False
                self.logger.error("%s died while building the configuration of %s%s",
                                  name, client, "; trying again" if attempt == 1 else "")
            finally:
                self._release_child(name, gen, alive)
        self.critical_error("Unable to build the configuration of %s: the worker "
                            "process died" % client)

    GetConfig.__doc__ = Core.GetConfig.__doc__

    @exposed
    def get_statistics(self, address):
        stats = {}
        own = self.__class__.__name__ + ":"

        def merge(newstats, prefix=None):
            for statname, vals in newstats.items():
                if statname.startswith("ChildCore:"):
                    statname = own + statname[len("ChildCore:"):]
                stats["%s:%s" % (prefix, statname) if prefix else statname] = list(vals)
                total = "Total:%s" % statname
                if total not in stats:
                    stats[total] = list(vals)
                else:
                    old = stats[total]
                    count = old[3] + vals[3]
                    mean = (old[2] * old[3] + vals[2] * vals[3]) / count if count else 0.0
                    stats[total] = [min(old[0], vals[0]), max(old[1], vals[1]), mean, count]

        for name in sorted(self.rpc_q.names()):
            try:
                merge(self.rpc_q.rpc(name, "get_statistics", args=[tuple(address)],
                                     timeout=self.statistics_timeout), prefix=name)
            except (ChildDied, ChildError, Fault, TimeoutError) as err:
                self.logger.warning("No statistics from %s: %s", name, err)
        merge(BuiltinCore.get_statistics(self, address))
        return stats

    get_statistics.__doc__ = Core.get_statistics.__doc__
