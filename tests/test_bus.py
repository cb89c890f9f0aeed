import threading

import pytest

from vj.control.bus import SOURCES, ControlBus


def test_newest_value_per_target_wins(bus):
    bus.post("osc", "zoom", 0.1)
    bus.post("midi", "zoom", 0.2)
    bus.post("osc", "pan_x", 0.3)
    bus.post("voice", "zoom", 0.4)
    events = bus.drain()
    assert [(e.target, e.value, e.source) for e in events] == [("pan_x", 0.3, "osc"), ("zoom", 0.4, "voice")]
    assert bus.drain() == []


def test_relative_moves_add_up_and_a_set_resets_them(bus):
    for _ in range(5):
        bus.post("midi", "zoom", 0.1, "add")
    (event,) = bus.drain()
    assert (event.op, event.value) == ("add", pytest.approx(0.5))
    bus.post("midi", "zoom", 0.1, "add")
    bus.post("osc", "zoom", 0.7)
    bus.post("midi", "zoom", 0.05, "add")
    assert [(e.op, e.value) for e in bus.drain()] == [("set", 0.7), ("add", 0.05)]


def test_toggles_cancel_in_pairs_and_triggers_fire_once(bus):
    bus.post("keys", "freeze", op="toggle")
    bus.post("keys", "freeze", op="toggle")
    for _ in range(10):
        bus.post("osc", "quit", op="fire")
    assert [(e.target, e.op) for e in bus.drain()] == [("quit", "fire")]


def test_relative_ops_need_numbers(bus):
    with pytest.raises(TypeError):
        bus.post("osc", "zoom", "lots", "add")


def test_every_event_is_counted_per_source(bus):
    bus.post("osc", "zoom", 0.1)
    bus.post("osc", "zoom", 0.2)
    bus.post("custom", "zoom", 0.3)
    counts = bus.counts()
    assert counts["osc"] == 2 and counts["custom"] == 1
    assert set(SOURCES) <= set(counts) and counts["midi"] == 0


def test_rejects_are_counted_and_logged_once_per_key(bus, caplog):
    for _ in range(5):
        bus.reject("osc", "bad type for /vj/zoom", key="/vj/zoom")
    bus.reject("osc", "unknown /vj/zzz", key="/vj/zzz")
    assert bus.rejected_counts()["osc"] == 6
    assert len([r for r in caplog.records if "dropped" in r.message]) == 2


def test_coalescing_across_threads_keeps_counts_and_sums_exact():
    bus = ControlBus()
    threads, per = 8, 2000
    drained: list = []
    stop = threading.Event()

    def producer(i: int) -> None:
        for n in range(per):
            bus.post(f"t{i}", "zoom", 0.001, "add")
            bus.post(f"t{i}", f"last{i}", n)

    def consumer() -> None:
        while not stop.is_set():
            drained.extend(bus.drain())

    c = threading.Thread(target=consumer)
    c.start()
    ps = [threading.Thread(target=producer, args=(i,)) for i in range(threads)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    stop.set()
    c.join()
    drained.extend(bus.drain())

    total = sum(e.value for e in drained if e.target == "zoom")
    assert total == pytest.approx(threads * per * 0.001), "no relative move is lost or doubled"
    for i in range(threads):
        values = [e.value for e in drained if e.target == f"last{i}"]
        assert values == sorted(values), "a later drain never brings back an older value"
        assert values[-1] == per - 1, "the newest value always arrives"
    assert sum(bus.counts()[f"t{i}"] for i in range(threads)) == threads * per * 2


def test_a_flood_costs_bounded_memory(bus):
    for n in range(50_000):
        bus.post("osc", "zoom", float(n % 7))
        bus.post("osc", "pan_x", 1.0, "add")
        bus.post("osc", "pan_x", 1.0, "nudge")
    events = bus.drain()
    assert len(events) <= 1 + 16
