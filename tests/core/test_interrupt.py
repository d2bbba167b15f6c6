"""gpusim.interrupt: SIGINT becomes a flag inside the block, the old handler comes back after."""

import os
import signal
import threading

import pytest

from gpusim.interrupt import deferred_interrupt


def test_sigint_sets_the_flag_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with deferred_interrupt() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGINT)          # delivered at the next bytecode boundary
        for _ in range(1000):
            if stop:
                break
        assert stop.requested
    assert signal.getsignal(signal.SIGINT) is before


def test_second_sigint_raises_keyboard_interrupt():
    with pytest.raises(KeyboardInterrupt), deferred_interrupt() as stop:
        stop.request()
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10**6):
            pass


def test_outside_the_main_thread_it_is_inert():
    seen = {}

    def work():
        with deferred_interrupt() as stop:
            seen["flag"] = bool(stop)
            seen["handler"] = signal.getsignal(signal.SIGINT)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen["flag"] is False
    assert seen["handler"] is signal.getsignal(signal.SIGINT)


def test_nested_loop_leaves_ctrl_c_to_the_outer_one():
    """A tuning batch running a walk-forward call: the first Ctrl-C lets the inner call finish
    (the outer loop stops after it), a second one stops at once."""
    with deferred_interrupt() as outer:
        handler = signal.getsignal(signal.SIGINT)
        with deferred_interrupt() as inner:
            assert signal.getsignal(signal.SIGINT) is handler
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                if outer:
                    break
            assert outer.requested and not inner.requested
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(10**6):
                    pass
        assert signal.getsignal(signal.SIGINT) is handler
