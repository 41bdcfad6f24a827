import threading
import time

import pytest

from local.clock import RealClock, VirtualClock


def _in_thread(fn):
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("v", fn()), daemon=True)
    t.start()
    return t, result


def test_manual_clock_sleep_wakes_only_when_advanced():
    clock = VirtualClock(start=1000.0)
    t, _ = _in_thread(lambda: clock.sleep(60))
    time.sleep(0.05)
    assert t.is_alive()
    clock.advance(59)
    time.sleep(0.05)
    assert t.is_alive()
    clock.advance(1)
    t.join(1)
    assert not t.is_alive()
    assert clock.now() == 1060.0


def test_wait_event_times_out_on_virtual_time_and_sees_the_event():
    clock = VirtualClock(start=0.0)
    ev = threading.Event()
    t, res = _in_thread(lambda: clock.wait_event(ev, 30))
    time.sleep(0.03)
    clock.advance(31)
    t.join(1)
    assert res["v"] is False
    ev2 = threading.Event()
    t, res = _in_thread(lambda: clock.wait_event(ev2, 30))
    ev2.set()
    t.join(1)
    assert res["v"] is True


def test_auto_clock_jumps_a_seven_day_sleep_but_not_a_timeout():
    clock = VirtualClock(start=0.0, auto=True)
    try:
        started = time.monotonic()
        clock.sleep(7 * 86400, auto=True)
        assert time.monotonic() - started < 0.5
        assert clock.now() == 7 * 86400
        ev = threading.Event()
        t, _ = _in_thread(lambda: clock.wait_event(ev, 10))
        time.sleep(0.1)
        assert t.is_alive(), "a timeout must not make the auto clock jump"
        clock.advance_to_next()
        t.join(1)
        assert not t.is_alive()
    finally:
        clock.close()


def test_auto_clock_does_not_jump_while_busy():
    clock = VirtualClock(start=0.0, auto=True)
    try:
        with clock.busy():
            t, _ = _in_thread(lambda: clock.sleep(5, auto=True))
            time.sleep(0.1)
            assert t.is_alive()
        t.join(1)
        assert not t.is_alive()
    finally:
        clock.close()


def test_sleep_cancel_and_real_clock_scale():
    clock = VirtualClock(start=0.0)
    cancel = threading.Event()
    t, res = _in_thread(lambda: clock.sleep(100, cancel=cancel))
    cancel.set()
    t.join(1)
    assert res["v"] is True and clock.pending() == []
    real = RealClock(scale=100)
    t0 = time.monotonic()
    real.sleep(5)
    assert time.monotonic() - t0 < 1
    with pytest.raises(ValueError):
        RealClock(scale=0)


def test_waiting_inside_busy_lets_the_auto_clock_jump():
    clock = VirtualClock(start=0.0, auto=True)
    try:
        with clock.busy():
            t, _ = _in_thread(lambda: clock.sleep(5, auto=True))
            time.sleep(0.1)
            assert t.is_alive()
            with clock.waiting():
                t.join(1)
                assert not t.is_alive()
        with clock.waiting():  # outside busy(): nothing to lend, the count never goes negative
            pass
        with clock.busy():
            t, _ = _in_thread(lambda: clock.sleep(5, auto=True))
            time.sleep(0.1)
            assert t.is_alive()
        t.join(1)
    finally:
        clock.close()
