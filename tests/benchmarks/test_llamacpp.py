"""benchmarks/orpheus/llamacpp.py's pure parts (no build, no server): llama-server's stream events
into records, grammar-free tokens into codes, the first chunk's frames, a level's summary, the
failed step named, and the report beside tritone."""

import numpy as np
import pytest

from tritone.benchmarks.orpheus import report as speech_report
from tritone.benchmarks.orpheus.llamacpp import (
    CompletionRecord, completion_body, first_window, grammar_free_codes, parse_event, resolve_gguf_type,
    summarize_level, write_gguf,
)
from tritone.benchmarks.orpheus.llamacpp_build import Build, BuildFailed, _run
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.orpheus.format import OrpheusFormat

FMT = OrpheusFormat()  # audio tokens from 128266, 4096 per frame position


def test_stream_lines_parse_into_events_and_an_error_event_raises_with_its_message():
    assert parse_event('data: {"tokens":[5],"tokens_predicted":1,"stop":false}') == {
        "tokens": [5], "tokens_predicted": 1, "stop": False}
    assert parse_event("") is None and parse_event(": keep-alive") is None and parse_event("data: [DONE]") is None
    with pytest.raises(RuntimeError, match="llama-server: the request exceeds the available context size"):
        parse_event('data: {"error":{"code":400,"message":"the request exceeds the available context size"}}')


def test_events_become_a_record_with_its_first_token_time_and_a_held_back_token_counted_missing():
    record = CompletionRecord(index=3, sent=10.0)
    record.feed({"tokens": [], "tokens_predicted": 0, "stop": False}, 10.2)  # no token yet: not the first token
    record.feed({"tokens": [128266], "tokens_predicted": 1, "stop": False}, 10.5)
    record.feed({"tokens": [132362], "tokens_predicted": 2, "stop": False}, 10.6)
    record.feed({"tokens": [7], "tokens_predicted": 4, "stop": False}, 10.8)  # token 3 was held back
    record.feed({"tokens": [], "tokens_predicted": 4, "stop": True, "stop_type": "limit",
                 "timings": {"cache_n": 8, "prompt_n": 1, "predicted_per_second": 27.5}}, 10.9)
    assert record.tokens == [128266, 132362, -1, 7]
    assert record.predicted == 4 and record.missing == 1
    assert record.time_to_first_token == pytest.approx(0.5)
    assert record.token_times == [10.5, 10.6, 10.8, 10.8]
    assert record.stop_type == "limit" and record.timings["cache_n"] == 8


def test_a_stream_stopped_at_end_of_generation_ends_with_end_of_speech_though_its_last_tokens_were_held_back():
    record = CompletionRecord(index=0, sent=0.0, end_token=FMT.end_of_speech)
    record.feed({"tokens": [128266], "tokens_predicted": 1, "stop": False}, 0.1)
    record.feed({"tokens": [], "tokens_predicted": 4, "stop": True, "stop_type": "eos"}, 0.3)
    assert record.tokens == [128266, -1, -1, FMT.end_of_speech] and record.missing == 2 and record.predicted == 4
    sent = CompletionRecord(index=1, sent=0.0, end_token=FMT.end_of_speech)  # the end token itself came
    sent.feed({"tokens": [128266], "tokens_predicted": 1, "stop": False}, 0.1)
    sent.feed({"tokens": [FMT.end_of_speech], "tokens_predicted": 2, "stop": False}, 0.2)
    sent.feed({"tokens": [], "tokens_predicted": 2, "stop": True, "stop_type": "eos"}, 0.2)
    assert sent.tokens == [128266, FMT.end_of_speech] and sent.missing == 0


def test_grammar_free_tokens_become_whole_frames_of_codes_folded_into_their_positions():
    valid = FMT.codes_to_tokens(np.array([[1], [2], [3], [4], [5], [6], [7]])).tolist()
    codes, count = grammar_free_codes(FMT, valid)
    assert codes.tolist() == [[1], [2], [3], [4], [5], [6], [7]] and count == 7
    # frame 2: a text token (5), position 0's code 9 at position 1, a missing token (-1), then valid codes
    second = [5, FMT.audio_start + 9, -1] + valid[3:]
    codes, count = grammar_free_codes(FMT, valid + second + [FMT.audio_start])  # a partial third frame
    assert codes.shape == (7, 2)
    assert codes[:, 1].tolist() == [(5 - FMT.audio_start) % 4096, (9 - 4096) % 4096, (-1 - FMT.audio_start - 2 * 4096)
                                    % 4096, 4, 5, 6, 7]
    assert count == 7 + 4
    codes, count = grammar_free_codes(FMT, valid + [FMT.end_of_speech] + valid)  # speech ends at end_of_speech
    assert codes.shape == (7, 1) and count == 7
    assert grammar_free_codes(FMT, valid[:6])[0].shape == (7, 0)


def test_the_first_chunk_needs_tritones_first_frames_and_their_lookahead():
    policy = ChunkPolicy(first_frames=3, growth=2.0, max_chunk_frames=24, left_context=3, lookahead=3, min_window=1)
    assert first_window(policy, 100) == 6
    assert first_window(policy, 4) == 4  # a stream allowed fewer frames: all of them
    assert first_window(policy, 2) == 2
    busy = ChunkPolicy(first_frames=3, growth=2.0, max_chunk_frames=24, left_context=3, lookahead=3, min_window=1,
                       busy_first_frames=1, busy_streams=4)
    assert [first_window(busy, 100, streams) for streams in (1, 3, 4, 8)] == [6, 6, 4, 4]  # as tritone cuts it


def test_the_report_names_the_first_chunk_at_each_level_where_it_differs():
    from tritone.benchmarks.orpheus.report import first_chunk_text

    assert first_chunk_text(6) == "6"  # results written before the busy knob
    assert first_chunk_text({"1": 6, "4": 6, "8": 6}) == "6"
    assert first_chunk_text({"1": 6, "4": 4, "8": 4}) == "6 at 1 stream, 4 at 4 streams, 4 at 8 streams"


def test_the_request_is_greedy_with_the_penalty_over_the_window_and_the_prompt_cache():
    body = completion_body([1, 2, 3], 245, 1.3, 2048)
    assert body == {"prompt": [1, 2, 3], "n_predict": 245, "stream": True, "return_tokens": True,
                    "samplers": ["penalties", "top_k"], "top_k": 1, "repeat_penalty": 1.3, "repeat_last_n": 2048,
                    "cache_prompt": True}


def test_a_level_reports_tokens_first_audio_and_audio_per_wall_second():
    records = []
    for i, (first_token, first_audio, frames) in enumerate([(0.2, 0.5, 10), (0.4, 0.9, 20)]):
        record = CompletionRecord(index=i, sent=0.0, first_token=first_token, first_audio=first_audio,
                                  first_decode_s=0.1 * (i + 1), frames=frames, predicted=7 * frames + 1,
                                  grammar_valid=frames, stop_type="limit", finished=2.0,
                                  timings={"cache_n": 10 * i, "prompt_n": 30, "predicted_per_second": 30.0 + i})
        records.append(record)
    records.append(CompletionRecord(index=2, sent=0.0, error="RuntimeError: boom"))
    level = summarize_level(2, records, started=0.0, ended=2.0, frame_seconds=0.1)
    assert level["requests"] == 3 and level["completed"] == 2 and level["errors"] == ["RuntimeError: boom"]
    assert level["tokens"] == 212 and level["tokens_per_s"] == 106.0
    assert level["audio_s"] == pytest.approx(3.0) and level["audio_s_per_wall_s"] == pytest.approx(1.5)
    assert level["audio_s_per_request"] == {"min": pytest.approx(1.0), "max": pytest.approx(2.0)}
    assert level["time_to_first_audio_s"]["p50"] == pytest.approx(0.7)
    assert level["time_to_first_token_s"]["max"] == pytest.approx(0.4)
    assert level["first_chunk_decode_s"]["max"] == pytest.approx(0.2)
    assert level["grammar_valid"] == pytest.approx(30 / 210)
    assert level["prompt_tokens"] == 70 and level["prompt_tokens_cached"] == 10
    assert level["stop_types"] == {"limit": 2} and level["load_average_1m"] >= 0


def test_a_failed_step_is_named(tmp_path):
    with pytest.raises(BuildFailed, match="llama.cpp build step 'configure' failed: no-such-cmake-here not found"):
        _run("configure", ["no-such-cmake-here", "--version"], log=lambda _: None)
    with pytest.raises(BuildFailed) as error:
        write_gguf(Build(tmp_path), tmp_path / "checkpoint", tmp_path, "f32", log=lambda _: None)
    assert error.value.step == "convert" and "no transformers checkpoint" in error.value.reason
    with pytest.raises(ValueError, match="llamacpp_gguf_type: expected one of auto, f32, bf16, f16, got 'q4'"):
        resolve_gguf_type("q4")
    assert resolve_gguf_type("f16") == "f16"


def _level(n, audio_per_wall, ttfa_p95, **extra):
    return {"concurrency": n, "audio_s_per_wall_s": audio_per_wall,
            "time_to_first_audio_s": {"p50": ttfa_p95 / 2, "p95": ttfa_p95}, **extra}


def test_the_report_sets_llamacpp_beside_tritone_or_names_the_step_that_failed():
    ours = [_level(1, 0.5, 1.0), _level(8, 2.0, 2.0)]
    theirs = [_level(1, 0.25, 0.5, tokens_per_s=20.5, time_to_first_token_s={"p50": 0.1},
                     first_chunk_decode_s={"p50": 0.05}, audio_s_per_request={"min": 1.0, "max": 2.0},
                     stop_types={"limit": 4}, grammar_valid=0.25, prompt_tokens=120, prompt_tokens_cached=80),
              _level(4, 1.0, 1.0)]  # a level tritone did not run: no comparison
    speech = {"voices": {"builtin": {"tritone": {"levels": ours}}},
              "llamacpp": {"status": "ok", "frame_s": 0.1, "voices": {"builtin": {"levels": theirs[:1]}},
                           "server": {"parallel": 8, "threads": 2, "samplers": ["penalties", "top_k"],
                                      "first_chunk_frames": 6}, "gguf": {"type": "bf16"},
                           "build": {"llama_cpp_python": "0.3.36"}}}
    assert speech_report.compare_llamacpp(ours, theirs, 0.1) == [{
        "concurrency": 1, "tritone_tokens_per_s": pytest.approx(35.0), "llamacpp_tokens_per_s": 20.5,
        "throughput_tritone_over_llamacpp": 2.0, "ttfa_p95_llamacpp_over_tritone": 0.5}]
    lines = speech_report.llamacpp_lines(speech, full=True)
    assert lines[0].startswith("`llama-server` (llama.cpp from llama-cpp-python 0.3.36's source, GGML_NATIVE) on the "
                               "same weights as bf16 GGUF, `--parallel 8` with continuous batching, 2 threads")
    assert lines[0].endswith("time to first audio = first 6 frames' tokens + their decode.")
    assert speech_report.llamacpp_lines(speech, full=False)[0].startswith("Beside llama.cpp: `llama-server` (")
    assert "| 1 | 35 / 20.5 | 0.5 / 0.25 (2x) | 500 / 1000 | 250 / 500 | 100 / 50 | 1-2, limit 4, 25%, 80 of 120 |" \
        in lines
    failed = {"llamacpp": {"status": "failed", "step": "build", "reason": "cmake not found"}}
    assert speech_report.llamacpp_lines(failed, full=False) == [
        "llama.cpp beside tritone: not measured: step `build` failed: cmake not found"]
    assert speech_report.llamacpp_lines({}, full=False) == []
    assert speech_report.llamacpp_lines({}, full=True) == ["(not measured in this run: `--llamacpp`)"]
