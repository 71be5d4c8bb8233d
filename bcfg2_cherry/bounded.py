"""Calls that may block for long (DNS look-ups) given a time limit."""
import threading


def bounded_call(func, args=(), timeout=5.0, name="bounded-call"):
    """``func(*args)`` in a daemon thread, given at most ``timeout`` seconds.

    Returns its result or raises its exception; raises TimeoutError when it takes
    longer (the thread is then abandoned: resolver calls cannot be interrupted).
    """
    result = {}

    def run():
        try:
            result["value"] = func(*args)
        except BaseException as err:  # noqa: BLE001  # pylint: disable=broad-except
            result["error"] = err

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError("no answer within %g s" % timeout)
    if "error" in result:
        raise result["error"]
    return result["value"]
