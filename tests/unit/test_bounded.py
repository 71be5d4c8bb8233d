"""bounded_call: a blocking call given a time limit."""
import threading
import time

import pytest

from bcfg2_cherry.bounded import bounded_call


def test_returns_the_result():
    assert bounded_call(lambda a, b: a + b, (1, 2), 1.0) == 3


def test_raises_the_exception():
    with pytest.raises(OSError, match="no such host"):
        bounded_call(lambda: (_ for _ in ()).throw(OSError("no such host")), (), 1.0)


def test_gives_up_after_the_timeout():
    release = threading.Event()
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="no answer within 0.1 s"):
        bounded_call(release.wait, (5,), 0.1)
    assert time.monotonic() - start < 1.0
    release.set()
