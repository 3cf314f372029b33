"""benchmarks/first_chunk.py end to end on tiny-random MusicGen: a real tritonserver per first-chunk size, the
family's benchmark streams at two levels, the committed config back afterwards."""

import json
from pathlib import Path

import pytest

from tritone.benchmarks import first_chunk

pytestmark = pytest.mark.integration

COMMITTED = Path(__file__).resolve().parents[2] / "model_repository" / "musicgen" / "configs" / "cpu.pbtxt"


def test_default_sizes_are_the_knob_off_about_half_and_one_frame():
    assert first_chunk.default_sizes(10) == [10, 5, 1]
    assert first_chunk.default_sizes(3) == [3, 2, 1]
    assert first_chunk.default_sizes(1) == [1]
    assert first_chunk.variant_parameters(10, 10) == {"busy_first_frames": "0", "busy_streams": "1"}
    assert first_chunk.variant_parameters(4, 10) == {"busy_first_frames": "4", "busy_streams": "1"}


def test_a_size_beyond_first_frames_is_refused_naming_the_limit(tmp_path):
    with pytest.raises(SystemExit, match=r"sizes: each must be in \[1, 10\] \(musicgen's first_frames\), got \[12\]"):
        first_chunk.main(["--model", "tiny-random", "--sizes", "12", "--work-dir", str(tmp_path), "--out", str(tmp_path)])


def test_each_size_is_served_and_its_first_chunks_hold_that_many_frames(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    assert first_chunk.main(["--model", "tiny-random", "--sizes", "10,2", "--concurrency", "1,2", "--duration", "1",
                             "--rounds", "1", "--min-requests", "2", "--work-dir", str(work), "--out", str(out)]) == 0
    section = json.loads((out / "results.json").read_text())["musicgen"]
    assert (section["first_frames"], section["sizes"]) == (10, [10, 2])
    assert [run["size"] for run in section["runs"]] == [10, 2]
    for run in section["runs"]:
        assert [(lv["concurrency"], lv["requests"], lv["completed"], lv["errors"]) for lv in run["levels"]] == \
            [(1, 2, 2, []), (2, 2, 2, [])]
        # 32 kHz, 640 samples a frame: 10 frames are 0.2 s of audio, 2 frames 0.04 s
        assert [lv["first_chunk_audio_s"] for lv in run["levels"]] == [pytest.approx(run["size"] * 0.02)] * 2
    rows = first_chunk.summary(section)
    assert [(row["concurrency"], row["size"]) for row in rows] == [(1, 10), (1, 2), (2, 10), (2, 2)]
    assert [row["ttfa_p95_vs_off"] for row in rows if row["size"] == 10] == [1.0, 1.0]
    assert "| 2 | 2 (40) |" in (out / "results.md").read_text()
    served = work / "tiny-random" / "model_repository" / "musicgen" / "configs" / "cpu.pbtxt"
    assert served.read_text() == COMMITTED.read_text()  # the variants' parameters are gone
