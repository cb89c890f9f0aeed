"""Tempo: taps, clock syncs, the beat the loop keeps, and what follows it (quantised scenes, LFOs, beat sparks)."""

from itertools import pairwise
from pathlib import Path

import pytest

from vj.control.bus import Event
from vj.engine.clock import SteppedClock
from vj.engine.loop import Show, ShowConfig
from vj.errors import ConfigError
from vj.scenes import load_scenes, parse_scene
from vj.tempo import TapTempo, Tempo, TempoSync, bars_crossed, wave


def taps(bpm: float, n: int, start: float = 100.0) -> list[float]:
    return [start + i * 60.0 / bpm for i in range(n)]


@pytest.mark.parametrize("bpm", [90.0, 120.0, 174.0])
def test_taps_give_the_tempo_from_the_third(bpm):
    t = TapTempo()
    got = [t.tap(x) for x in taps(bpm, 6)]
    assert got[:2] == [None, None]
    assert all(b == pytest.approx(bpm, rel=1e-9) for b in got[2:])


def test_one_flubbed_tap_does_not_move_the_tempo_and_a_pause_starts_over():
    t = TapTempo()
    times = taps(120, 8)
    times[5] += 0.12  # one tap late: two intervals off, the median holds
    bpm = None
    for x in times:
        bpm = t.tap(x)
    assert bpm == pytest.approx(120, rel=1e-9)
    assert t.tap(times[-1] + 3.5) is None and t.count == 1, "a pause over three seconds starts a new sequence"


def test_a_bounce_is_one_tap_and_taps_outside_the_range_are_refused():
    t = TapTempo()
    for x in taps(120, 3):
        t.tap(x)
        assert t.tap(x + 0.01) is None, "a switch bouncing 10 ms later"
    assert t.count == 3 and t.tap(101.5) == pytest.approx(120)
    fast = TapTempo()
    with pytest.raises(ValueError, match=r"outside 20\.\.300"):
        for x in taps(400, 3):
            fast.tap(x)


def test_a_long_tap_sequence_keeps_the_beat_moving():
    tempo = Tempo()
    beats = []
    for i, t in enumerate(taps(120, 24, start=0.0)):
        if i:
            for _ in range(29):  # half a second of frames between taps...
                tempo.advance(1 / 60, 120.0)
        tempo.tap(t)
        tempo.advance(1 / 60, 120.0)  # ...the last of them the tap's own, as the loop does: events, then the move
        beats.append(tempo.beat)
    tempo.advance(0.5, 120.0)
    assert tempo.beat == pytest.approx(24.0, abs=1e-6), "each tap one beat after the last, however many"
    assert all(b > a for a, b in pairwise(beats))


def test_the_beat_moves_at_the_tempo_and_steers_to_a_clock_without_jumping():
    tempo = Tempo()
    for _ in range(120):
        tempo.advance(1 / 60, 120.0)
    assert tempo.beat == pytest.approx(4.0)
    # A clock says its beat is 4.3 in this frame, ours will be 4.03: we get there in a few hundred ms, never
    # backwards, never a leap (the sync is taken after the frame's move: the beat before it is the last frame's).
    tempo.sync(TempoSync("midi-clock", 120.0, beat=4.3, at=10.0), now=2.0, real_now=10.0)
    beats = [tempo.beat]
    for _ in range(60):
        tempo.advance(1 / 60, 120.0)
        beats.append(tempo.beat)
    assert beats[-1] == pytest.approx(4.3 + 59 * 2.0 / 60, abs=1e-3)
    steps = [b - a for a, b in pairwise(beats)]
    assert min(steps) >= 0 and max(steps) < 3 * (2.0 / 60), "steered over frames"
    assert tempo.source == "midi-clock" and tempo.leader(2.5) == "midi-clock" and tempo.leader(3.5) is None


def test_a_clock_behind_by_most_of_a_beat_is_met_the_short_way():
    tempo = Tempo()
    tempo.beat = 8.0
    tempo.sync(TempoSync("midi-clock", 120.0, beat=20.9, at=0.0), now=0.0, real_now=0.0)
    for _ in range(60):
        tempo.advance(1 / 60, 120.0)
    clock = 20.9 + 59 * 2.0 / 60
    assert (tempo.beat - clock) % 1 == pytest.approx(0, abs=1e-3) or (tempo.beat - clock) % 1 == pytest.approx(1)
    assert tempo.beat < 10, "0.87 ahead is 0.13 behind: held back, not rushed a beat on"
    # Link shares bars: there the phase within the bar (4 beats) counts.
    before = tempo.beat
    tempo.sync(TempoSync("link", 120.0, beat=22.9, at=0.0), now=0.0, real_now=0.0)
    for _ in range(120):
        tempo.advance(1 / 60, 120.0)
    link = 22.9 + 119 * 2.0 / 60
    assert (tempo.beat - link) % 4 == pytest.approx(0, abs=1e-3) or (tempo.beat - link) % 4 == pytest.approx(4)
    assert before + 2 < tempo.beat < before + 6


def test_start_and_stop_set_the_beat_and_hold_it():
    tempo = Tempo()
    tempo.beat = 13.7
    tempo.sync(TempoSync("midi-clock", 120.0, running=False), now=0.0, real_now=0.0)
    tempo.advance(0.5, 120.0)
    assert tempo.beat == 13.7 and not tempo.running
    tempo.sync(TempoSync("midi-clock", 120.0, beat=0.0, at=5.0, restart=True), now=0.0, real_now=5.0)
    tempo.advance(1 / 60, 120.0)
    assert tempo.beat == 0.0 and tempo.running, "the song starts over: set, not steered"


def test_waves_and_downbeats():
    for shape in ("sine", "triangle", "saw", "square", "random"):
        values = [wave(shape, i / 100) for i in range(4000)]
        assert -1 <= min(values) < -0.5 and 0.5 < max(values) <= 1, shape
    assert wave("sine", 0.25) == pytest.approx(1) and wave("triangle", 0.25) == pytest.approx(1)
    assert wave("random", 0.1) == wave("random", 0.9) != wave("random", 1.1), "held for one cycle"
    assert bars_crossed(3.9, 4.1, 1) and not bars_crossed(4.1, 7.9, 1)
    assert bars_crossed(7.9, 8.0, 2) and not bars_crossed(3.9, 4.1, 2)


# -- in a running show ------------------------------------------------------------------------------------------------
def write_scenes(folder: Path, extra: str = "") -> None:
    (folder / "01-a.toml").write_text('name = "A"\nprompt = "glass forest"\ntransition = 0\n')
    (folder / "02-b.toml").write_text(f'name = "B"\nprompt = "fire"\ntransition = 0\n{extra}')


def show(folder: Path, **kw) -> Show:
    cfg = ShowConfig(
        size=(160, 90), gen_size=(64, 64), headless=True, generator="sketch", scenes=load_scenes(folder), **kw
    )
    return Show(cfg, clock=SteppedClock())  # frame k at exactly k/60 s


def test_a_quantised_scene_switch_lands_on_the_next_bar(tmp_path):
    write_scenes(tmp_path, 'quantize = "bar"\n')
    s = show(tmp_path, frames=150, scene=1)
    seen = []

    def watch(s: Show) -> None:
        if s.frames == 40:  # beat 1.33 at 120 BPM: the next bar starts on beat 4, 2 s in
            s.bus.post("osc", "scene", 2)
        seen.append((s.frames, s.director.number, s.tempo.beat))

    s.on_frame.append(watch)
    report = s.run()
    switched = next(i for i, (_, n, _) in enumerate(seen) if n == 2)
    _, _, beat = seen[switched]
    assert 4.0 <= beat < 4.0 + 2.0 / 60 + 1e-9, "on the downbeat, at most a frame late"
    assert report["tempo"]["quantized"] == {"scene": 2, "due": 4.0, "beat": pytest.approx(beat, abs=1e-3)}
    assert report["scene_number"] == 2 and report["tempo"]["bpm"] == 120.0


def test_the_newest_request_wins_and_a_reloaded_folder_does_not_misdirect_it(tmp_path):
    write_scenes(tmp_path, 'quantize = "bar"\n')
    (tmp_path / "03-replay.toml").write_text('name = "Best"\nkind = "replay"\n')
    s = show(tmp_path, frames=150, scene=1)
    seen = []

    def watch(s: Show) -> None:
        if s.frames == 10:
            s.bus.post("osc", "scene", "B")
        if s.frames == 20:  # a new file sorts before B while the switch waits: B is now scene 3
            (tmp_path / "01b-new.toml").write_text('name = "Intruder"\nprompt = "x"\n')
            s.director.scenes = load_scenes(tmp_path)
        seen.append(s.director.active.name if s.director.active else None)

    s.on_frame.append(watch)
    report = s.run()
    assert "Intruder" not in seen and seen[-1] == "B" and report["tempo"]["quantized"]["scene"] == 3
    s = show(tmp_path, frames=150, scene=1)
    s.on_frame.append(lambda s: s.bus.post("osc", "scene", "B") if s.frames == 10 else None)
    s.on_frame.append(lambda s: s.bus.post("osc", "replay", op="fire") if s.frames == 20 else None)
    assert s.run()["scene"] == "Best", "replay was asked for last"


def test_without_quantize_a_switch_is_at_once(tmp_path):
    write_scenes(tmp_path)
    s = show(tmp_path, frames=60, scene=1)
    s.on_frame.append(lambda s: s.bus.post("osc", "scene", 2) if s.frames == 10 else None)
    numbers = []
    s.on_frame.append(lambda s: numbers.append(s.director.number))
    s.run()
    assert numbers.index(2) == 10, "the very next frame"


def test_an_lfo_follows_the_beat_and_leaves_the_parameter_as_set(tmp_path):
    write_scenes(tmp_path, '[params]\nzoom = 0.1\n[lfo.zoom]\nshape = "sine"\nbeats = 2\ndepth = 0.3\n')
    s = show(tmp_path, frames=240, scene=2)
    used = []
    s.on_frame.append(lambda s: used.append((s.tempo.beat, s.values["zoom"], s.params["zoom"])))
    s.run()
    late = [(beat, z) for beat, z, _ in used[60:]]  # faded in
    assert max(z for _, z in late) == pytest.approx(0.4, abs=0.01) and min(z for _, z in late) == pytest.approx(
        -0.2, abs=0.01
    )
    for beat, z in late:
        assert z == pytest.approx(0.1 + 0.3 * wave("sine", beat / 2), abs=1e-6)
    assert all(p == pytest.approx(0.1) for _, _, p in used), "the knob's value stays where it was set"
    first = [abs(z - 0.1) for _, z, _ in used[:5]]
    assert max(first) < 0.05, "eased in: no jump when the scene starts"


def test_sparks_on_the_downbeat_every_two_bars(tmp_path):
    write_scenes(tmp_path, "spark_bars = 2\n")
    s = show(tmp_path, frames=60 * 9, scene=2)  # 9 s at 120 BPM: 4.5 bars... the downbeats of bars 2 and 4
    report = s.run()
    assert report["sparks_beat"] == 2


def test_taps_set_the_tempo_in_a_show_and_midi_clock_refuses_them(tmp_path):
    write_scenes(tmp_path)
    s = show(tmp_path, frames=2)
    s.run()
    s.apply([Event("keys", "tap", op="fire", posted=t) for t in taps(100, 4)])
    assert s.params.target("bpm") == pytest.approx(100) and s.tempo.source == "tap"
    s.apply([Event("osc", "bpm", 140.0)])
    assert s.params.target("bpm") == 140 and s.tempo.source == "osc"
    s.apply([Event("clock_in", "tempo_sync", TempoSync("midi-clock", 174.0, beat=0.0, at=0.0))])
    assert s.params.target("bpm") == 174 and s.tempo.source == "midi-clock"
    before = s.bus.rejected_counts()["osc"]
    s.apply([Event("osc", "bpm", 90.0), Event("osc", "tap", op="fire")])
    assert s.params.target("bpm") == 174, "MIDI clock leads: a hand-set tempo is refused"
    assert s.bus.rejected_counts()["osc"] == before + 2


def test_a_clock_echoing_its_tempo_does_not_undo_one_set_by_hand(tmp_path):
    write_scenes(tmp_path)
    s = show(tmp_path, frames=2)
    s.run()
    link = TempoSync("link", 120.0, beat=0.0, at=0.0, peers=1)
    s.apply([Event("link", "tempo_sync", link)])
    s.apply([Event("osc", "bpm", 140.0), Event("link", "tempo_sync", link)])  # the same frame
    assert s.params.target("bpm") == 140, "the session's old tempo echoing back does not undo the new one"
    s.apply([Event("link", "tempo_sync", TempoSync("link", 100.0, beat=0.0, at=0.0, peers=1))])
    assert s.params.target("bpm") == 100, "a change of the session's own tempo is followed"


def test_scene_tempo_keys_are_checked():
    for text, where in (
        ({"quantize": "bars"}, "quantize"),
        ({"lfo": {"zom": {"depth": 0.1}}}, "did you mean 'zoom'"),
        ({"lfo": {"prompt": {"depth": 0.1}}}, "only numbers"),
        ({"lfo": {"zoom": {"depth": 0.1, "shape": "wobble"}}}, "lfo.zoom.shape"),
        ({"lfo": {"zoom": {"depth": 0.1, "beats": 0}}}, "lfo.zoom.beats"),
        ({"spark_bars": -1}, "spark_bars"),
        ({"lfo": {"bpm": {"depth": 10}}}, "cannot follow its own beat"),
    ):
        with pytest.raises(ConfigError, match=where):
            parse_scene({"prompt": "x", **text}, "s.toml")
