"""The llama.cpp phase against a real llama-server (built by `make llamacpp`; skipped where it is
not) on tiny-random Orpheus written to GGUF by llama.cpp's converter: two streams at once, with a
built-in and with a cloned voice, speak the tokens transformers' greedy generate() says with the
same repetition penalty and no grammar (3.0, where random weights change their choices under it),
every token the server streamed in its place; the first chunk's audio is decoded, and a level's
summary counts every request."""

import asyncio

import numpy as np
import pytest

from tritone.benchmarks.orpheus import llamacpp
from tritone.benchmarks.orpheus.baseline import decode_audio, load_speech_baseline, prompt_ids
from tritone.benchmarks.orpheus.llamacpp_build import Build
from tritone.benchmarks.orpheus.suite import workload
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.orpheus.pipeline import ORPHEUS_POLICY
from tritone.serving.triton import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Build().binary.is_file(), reason="llama-server not built (make llamacpp)")]

PENALTY = 3.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tritone.export.orpheus.export import export_orpheus

    root = tmp_path_factory.mktemp("llamacpp")
    export_orpheus("tiny-random", root / "repository")
    build = Build()
    gguf = llamacpp.write_gguf(build, root / "repository" / "orpheus" / "1" / "checkpoint", root, "f32",
                               log=lambda _: None)
    baseline = load_speech_baseline(root / "repository", threads=2)
    fmt, meta = baseline.format, baseline.meta
    speaker = llamacpp.Speaker(fmt, lambda codes: decode_audio(baseline.codec, [codes])[0], ORPHEUS_POLICY,
                               meta.frame_samples / meta.sample_rate)
    args = llamacpp.server_args(build, gguf, free_port(), threads=2, parallel=2, ctx_per_slot=1024,
                                end_of_speech=fmt.end_of_speech)
    with llamacpp.llama_server(args, root / "llama-server.log") as url:
        yield url, baseline, speaker


def _requests(baseline, mode: str):
    meta = baseline.meta
    out = []
    for r in workload(meta, mode, 3.0, PENALTY)(2, 1.0):
        prompt = prompt_ids(baseline.tokenizer, baseline.format, r.text, r.voice, r.reference_text, r.reference_codes)
        frame_limit = int(r.max_duration * meta.frame_rate)
        out.append((llamacpp.completion_body(prompt, TOKENS_PER_FRAME * frame_limit, PENALTY, 1024), frame_limit))
    return out


def _expected(baseline, body) -> list[int]:
    """transformers' greedy answer, no grammar, the same penalty (end_of_speech included when said)."""
    import torch

    fmt = baseline.format
    with torch.inference_mode():
        return baseline.lm.generate(
            torch.tensor([body["prompt"]]), do_sample=False, max_new_tokens=body["n_predict"],
            repetition_penalty=PENALTY, eos_token_id=fmt.end_of_speech, pad_token_id=fmt.pad_token_id,
        )[0, len(body["prompt"]):].tolist()


@pytest.mark.parametrize("mode", ["builtin", "cloned"])
def test_two_streams_at_once_speak_transformers_greedy_tokens(served, mode):
    import httpx

    url, baseline, speaker = served
    fmt = baseline.format
    requests = _requests(baseline, mode)

    async def both():
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(*(llamacpp.stream_completion(client, url, i, body, limit, speaker, 120)
                                          for i, (body, limit) in enumerate(requests)))

    records = asyncio.run(both())
    received = 0
    for (body, frame_limit), record in zip(requests, records):
        assert record.error is None
        expected = _expected(baseline, body)
        assert len(record.tokens) == record.predicted == len(expected)
        assert [t for t in record.tokens if t != -1] == [e for t, e in zip(record.tokens, expected) if t != -1]
        assert record.stop_type == ("eos" if expected[-1] == fmt.end_of_speech else "limit")
        received += sum(t != -1 for t in record.tokens)
        codes, _ = llamacpp.grammar_free_codes(fmt, record.tokens)
        assert record.frames == codes.shape[1] == len([t for t in expected if t != fmt.end_of_speech]) // 7
        assert record.first_token is not None and record.first_audio is not None and record.first_decode_s > 0
        assert record.first_token < record.first_audio <= record.finished
    assert received >= sum(len(r.tokens) for r in records) // 2  # most tokens came (held-back bytes are missing)
    assert len(set(records[0].tokens)) > 3  # the penalty changes the random weights' choices


def test_a_level_counts_every_request_and_its_audio(served):
    url, baseline, speaker = served
    requests = _requests(baseline, "builtin")
    level = asyncio.run(llamacpp.run_level(url, 2, requests, speaker))
    assert level["requests"] == level["completed"] == 2 and level["errors"] == []
    assert level["tokens"] == sum(len(_expected(baseline, body)) for body, _ in requests)
    assert level["audio_s"] == pytest.approx(sum(level["audio_s_per_request"].values()))
    assert level["prompt_tokens"] == sum(len(r["prompt"]) for r, _ in requests)
    assert 0 < level["time_to_first_token_s"]["max"] < level["time_to_first_audio_s"]["max"]
    assert np.isfinite(level["audio_s_per_wall_s"]) and level["audio_s_per_wall_s"] > 0
