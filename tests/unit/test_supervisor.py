"""The restart policy of `python -m tritone.serving` (serving/supervisor.py), with fake children."""

from tritone.serving.supervisor import STABLE_S, Backoff, Child


def test_backoff_doubles_up_to_its_maximum_and_starts_over_after_a_stable_run():
    backoff = Backoff(initial=1.0, maximum=8.0)
    assert [backoff.next(ran_for=0.5) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.next(ran_for=STABLE_S) == 1.0
    assert backoff.next(ran_for=2.0) == 2.0


class FakeProcess:
    def __init__(self):
        self.running, self.starts, self.stops = False, 0, 0

    def start(self):
        self.running, self.starts = True, self.starts + 1

    def stop(self, timeout):
        self.running, self.stops = False, self.stops + 1


def fake_child() -> tuple[Child, FakeProcess]:
    process = FakeProcess()
    child = Child("fake", process.start, lambda: process.running, process.stop, lambda: -9)
    child.start()
    return child, process


def test_an_exited_child_is_reaped_then_started_again_after_its_backoff(capsys):
    child, process = fake_child()
    now = child.started_at
    process.running = False  # it died
    child.check(now + 1)
    assert process.stops == 1 and process.starts == 1
    assert "fake exited with code -9 after 1.0 s; restarting in 1 s" in capsys.readouterr().out
    child.check(now + 1.5)  # not due yet
    assert process.starts == 1
    child.check(now + 2.0)
    assert process.starts == 2 and process.running and child.restarts == 1
    assert "restarting fake (restart 1)" in capsys.readouterr().out


def test_a_running_child_is_left_alone():
    child, process = fake_child()
    for second in range(5):
        child.check(child.started_at + second)
    assert (process.starts, process.stops) == (1, 0)
