"""Chunk sizes and decode windows for streaming audio."""

import pytest

from tritone.ensemble.engine.chunker import ChunkPolicy, Chunker


def test_chunk_sizes_grow_geometrically_and_are_capped():
    policy = ChunkPolicy(first_frames=10, growth=2.0, max_chunk_frames=100)
    assert [policy.size(i) for i in range(6)] == [10, 20, 40, 80, 100, 100]


def test_growth_one_keeps_every_chunk_the_same_size():
    policy = ChunkPolicy(first_frames=7, growth=1.0, max_chunk_frames=50)
    assert [policy.size(i) for i in range(4)] == [7, 7, 7, 7]


def drain(policy, total):
    """Feed one more complete frame at a time, as the decode loop does; -> [(frames_complete, window)]."""
    chunker = Chunker(policy, total)
    out = []
    for complete in range(total + 1):
        while (window := chunker.next_chunk(complete)) is not None:
            out.append((complete, window))
    assert chunker.done
    assert chunker.next_chunk(total) is None
    return out


@pytest.mark.parametrize("total", [1, 9, 10, 11, 37, 250])
def test_windows_cover_every_frame_once_in_order_and_only_the_last_is_final(total):
    policy = ChunkPolicy(first_frames=10, growth=2.0, max_chunk_frames=100, left_context=25, lookahead=5)
    windows = [w for _, w in drain(policy, total)]
    assert [w.index for w in windows] == list(range(len(windows)))
    assert windows[0].start == 0
    for before, after in zip(windows, windows[1:]):
        assert after.start == before.end
    assert windows[-1].end == total
    assert [w.final for w in windows] == [False] * (len(windows) - 1) + [True]


def test_chunk_sizes_follow_the_policy_until_the_tail():
    policy = ChunkPolicy(first_frames=10, growth=2.0, max_chunk_frames=40, left_context=0, lookahead=0)
    windows = [w for _, w in drain(policy, 125)]
    assert [w.end - w.start for w in windows] == [10, 20, 40, 40, 15]


def test_windows_add_left_context_and_lookahead_clipped_to_the_run():
    policy = ChunkPolicy(first_frames=10, growth=2.0, max_chunk_frames=100, left_context=25, lookahead=5)
    windows = [w for _, w in drain(policy, 37)]
    bounds = [(w.start, w.end, w.window_start, w.window_end) for w in windows]
    assert bounds == [
        (0, 10, 0, 15),  # no history before frame 0
        (10, 30, 0, 35),  # left context 25 clipped at 0
        (30, 37, 5, 37),  # lookahead clipped at the last frame
    ]


def test_nothing_is_emitted_before_the_lookahead_frames_exist():
    policy = ChunkPolicy(first_frames=10, growth=2.0, max_chunk_frames=100, left_context=25, lookahead=5)
    emitted_at = [complete for complete, _ in drain(policy, 100)]
    assert emitted_at == [15, 35, 75, 100]
    chunker = Chunker(policy, 100)
    assert chunker.next_chunk(14) is None
    assert chunker.next_chunk(15).end == 10


def test_trim_keeps_only_the_chunks_own_samples():
    import numpy as np

    policy = ChunkPolicy(first_frames=2, growth=1.0, max_chunk_frames=2, left_context=1, lookahead=1, min_window=1)
    chunker = Chunker(policy, 6)
    chunker.next_chunk(3)
    window = chunker.next_chunk(5)  # frames 2..4 decoded in window 1..5
    assert (window.start, window.end, window.window_start, window.window_end) == (2, 4, 1, 5)
    hop = 3
    audio = np.arange((window.window_end - window.window_start) * hop)
    np.testing.assert_array_equal(window.trim(audio, hop), np.arange(3, 9))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_frames": 0},
        {"first_frames": 20, "max_chunk_frames": 10},
        {"growth": 0.5},
        {"left_context": -1},
        {"lookahead": -1},
        {"first_frames": 10, "busy_first_frames": 11},
        {"busy_first_frames": -1},
        {"busy_streams": 0},
    ],
)
def test_chunk_policy_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError, match="invalid chunk policy"):
        ChunkPolicy(**kwargs)


def test_a_window_shorter_than_the_codec_accepts_reaches_further_back():
    policy = ChunkPolicy(first_frames=2, growth=1.0, max_chunk_frames=2, left_context=0, lookahead=0, min_window=5)
    chunker = Chunker(policy, 10)
    first = chunker.next_chunk(2)
    assert (first.start, first.end, first.window_start, first.window_end) == (0, 2, 0, 2)  # nothing earlier exists
    for complete in (4, 6):
        chunker.next_chunk(complete)
    window = chunker.next_chunk(8)
    assert (window.start, window.end, window.window_start, window.window_end) == (6, 8, 3, 8)


def test_a_busy_batch_cuts_the_first_chunk_sooner_and_leaves_later_chunks_alone():
    policy = ChunkPolicy(first_frames=10, growth=2.0, max_chunk_frames=100, left_context=25, lookahead=5,
                         busy_first_frames=4, busy_streams=3)
    assert [policy.size(0, streams) for streams in (1, 2, 3, 8)] == [10, 10, 4, 4]
    assert [policy.size(1, 8), policy.size(2, 8)] == [20, 40]
    quiet, busy = Chunker(policy, 100), Chunker(policy, 100)
    busy.streams = 3
    assert quiet.next_chunk(9) is None
    first = busy.next_chunk(9)  # 4 frames + 5 of lookahead
    assert (first.start, first.end, first.window_start, first.window_end) == (0, 4, 0, 9)
    assert (busy.next_chunk(29).start, busy.next_chunk(29)) == (4, None)  # then 20 frames, as the policy says


def test_a_stream_that_waits_for_its_first_chunk_follows_the_batch_as_it_fills():
    policy = ChunkPolicy(first_frames=10, lookahead=5, busy_first_frames=4, busy_streams=2)
    chunker = Chunker(policy, 100)
    assert chunker.next_chunk(12) is None  # alone: 10 frames + 5
    chunker.streams = 2  # another stream joined
    assert chunker.next_chunk(12).end == 4
    chunker.streams = 1
    assert chunker.next_chunk(29).end == 24  # the first chunk alone depends on the batch


def test_the_policy_renders_every_knob_as_a_config_parameter():
    policy = ChunkPolicy(first_frames=3, growth=2.0, max_chunk_frames=24, left_context=3, lookahead=3, min_window=1,
                         busy_first_frames=2, busy_streams=4)
    assert policy.parameters() == {"first_frames": "3", "growth": "2.0", "max_chunk_frames": "24",
                                   "left_context": "3", "lookahead": "3", "min_window": "1",
                                   "busy_first_frames": "2", "busy_streams": "4"}
