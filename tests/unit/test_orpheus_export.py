"""The speech export (Orpheus-format Llama LM + SNAC): files, metadata, and graphs equal to torch.

One tiny-random export through the CLI, shared by the module; every graph is then run in ONNX
Runtime against the library it came from (transformers' Llama, snac.SNAC).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("snac")

from tritone.ensemble import tensors as T  # noqa: E402
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME, frame_to_levels, levels_to_frame  # noqa: E402
from tritone.ensemble.orpheus.metadata import CHECKPOINT_DIR, CODEC_DIR, LM_STEP_FILE, TOKENIZER_DIR, OrpheusMetadata  # noqa: E402
from tritone.ensemble.orpheus.graphs import DECODER_LEFT_CONTEXT_FRAMES, DECODER_LOOKAHEAD_FRAMES, SnacDecoder  # noqa: E402
from tritone.export.orpheus.export import ORPHEUS_VOICES  # noqa: E402
from tritone.export.orpheus.tiny import SENTENCES  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FRAME = 2048


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """`python -m tritone.export orpheus --checkpoint tiny-random --out DIR`, once for the module."""
    out = tmp_path_factory.mktemp("speech_repo")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tritone.export", "orpheus", "--checkpoint", "tiny-random", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exported tiny-random" in done.stdout
    assert time.perf_counter() - started < 60
    return out


@pytest.fixture(scope="module")
def spec(repository):
    return OrpheusMetadata.load(repository / T.ORPHEUS / "1")


@pytest.fixture(scope="module")
def lm(repository):
    from transformers import AutoTokenizer, LlamaForCausalLM

    checkpoint = repository / T.ORPHEUS / "1" / CHECKPOINT_DIR
    model = LlamaForCausalLM.from_pretrained(checkpoint, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(repository / T.ORPHEUS / "1" / TOKENIZER_DIR)


@pytest.fixture(scope="module")
def codec(repository):
    from snac import SNAC

    return SNAC.from_pretrained(str(repository / T.ORPHEUS / "1" / CODEC_DIR))


# --- files and metadata ------------------------------------------------------------------
def test_export_writes_graphs_tokenizer_and_metadata(repository, spec, tmp_path):
    version = repository / T.ORPHEUS / "1"
    for path in [version / LM_STEP_FILE, repository / T.SNAC_ENCODER / "1" / "model.onnx",
                 repository / T.SNAC_DECODER / "1" / "model.onnx",
                 version / CHECKPOINT_DIR / "config.json", version / CODEC_DIR / "config.json",
                 version / CODEC_DIR / "pytorch_model.bin", version / TOKENIZER_DIR / "tokenizer.json"]:
        assert path.is_file(), path
    assert not list(repository.rglob("config.pbtxt")) and not list(repository.rglob("model.py"))

    assert (spec.checkpoint, spec.codec_checkpoint) == ("tiny-random", "tiny-random")
    assert (spec.sample_rate, spec.frame_samples, spec.codebook_size) == (24000, 2048, 64)
    assert spec.vocab_size == spec.text_vocab_size + 10 + 7 * 64 + 2
    assert (spec.num_layers, spec.num_kv_heads, spec.head_dim, spec.hidden_size) == (2, 2, 16, 64)
    assert spec.max_positions == 4096 and spec.voices == ORPHEUS_VOICES
    assert spec.format.audio_end <= spec.vocab_size
    assert OrpheusMetadata.load(spec.save(tmp_path).parent) == spec
    written = json.loads((version / "speech.json").read_text())
    assert set(written) == {f.name for f in dataclasses.fields(OrpheusMetadata)} and None not in written.values()
    assert round(spec.tokens_per_second) == 82


def test_tokenizer_is_byte_level_with_bos(lm, spec):
    _, tokenizer = lm
    assert 300 <= spec.text_vocab_size <= 400 and len(tokenizer) == spec.text_vocab_size
    for text in (SENTENCES[0], "Grüße aus Zürich, 東京 🙂"):
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == spec.bos_token_id and max(ids) < spec.text_vocab_size
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") == spec.eot_token_id


def test_second_export_is_skipped(repository, spec, capsys):
    from tritone.export.orpheus.export import export_orpheus

    assert export_orpheus("tiny-random", repository) == spec
    assert "already holds" in capsys.readouterr().out


def test_unreachable_hub_fails_fast_with_a_hint(tmp_path):
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="0")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tritone.export", "orpheus", "--checkpoint", "nobody/no-such-orpheus",
                           "--out", str(tmp_path / "repo")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nobody/no-such-orpheus" in done.stderr and "--checkpoint tiny-random" in done.stderr
    assert time.perf_counter() - started < 30


# --- the LM step --------------------------------------------------------------------------
def _prompt(tokenizer, spec, text, extra):
    return spec.format.prompt_ids(tokenizer(text)["input_ids"]) + list(extra)


def test_lm_step_equals_transformers_across_chunked_prefill_and_decode(repository, lm, spec):
    """Two rows at different positions share every call: prefill in chunks of width 8 and of the
    rest (the shorter row padded), then 3 single-token steps; the cache is kept by the test,
    padded with garbage beyond each row's position. Logits and cached (rotated) keys equal
    transformers' forward over the whole sequence."""
    model, tokenizer = lm
    fmt = spec.format
    audio = [fmt.audio_start + k * fmt.codebook_size + 5 * k for k in range(3)]  # a frame's first 3 codes
    rows = [_prompt(tokenizer, spec, f"tara: {SENTENCES[0]}", audio),
            _prompt(tokenizer, spec, f"leo: {SENTENCES[5][:12]}", audio[::-1])]
    with torch.no_grad():
        reference = [model(torch.tensor([ids]), use_cache=True) for ids in rows]

    session = _session(repository / T.ORPHEUS / "1" / LM_STEP_FILE)
    L, H, D = spec.num_layers, spec.num_kv_heads, spec.head_dim
    caches = [np.zeros((2, L, H, 0, D), np.float32) for _ in rows]  # keys, values per row
    done = [0, 0]
    prompt_lengths = [len(ids) - 3 for ids in rows]
    schedule = [[8, 5], [prompt_lengths[0] - 8, prompt_lengths[1] - 5], [1, 1], [1, 1], [1, 1]]
    rng = np.random.default_rng(0)
    worst = 0.0
    for counts in schedule:
        width = max(counts)
        positions = np.array(done, np.int64)
        assert positions[0] != positions[1] or not done[0]
        ids = np.zeros((2, width), np.int64)
        for r, n in enumerate(counts):
            ids[r, :n] = rows[r][done[r]:done[r] + n]
            ids[r, n:] = 7  # padding: any token
        past = max(c.shape[3] for c in caches) + (2 if done[0] else 0)  # the first call: an empty cache
        padded = 1e3 * rng.standard_normal((2, L, 2, H, past, D)).astype(np.float32)  # masked garbage
        for r, cache in enumerate(caches):
            padded[:, :, r, :, :cache.shape[3]] = cache
        logits, new_keys, new_values = session.run(
            [T.LOGITS, T.NEW_KEYS, T.NEW_VALUES],
            {T.INPUT_IDS: ids, T.POSITIONS: positions, T.LOGIT_INDEX: np.array(counts, np.int64) - 1,
             T.PAST_KEYS: padded[0], T.PAST_VALUES: padded[1]})
        assert logits.shape == (2, spec.vocab_size) and logits.dtype == np.float32
        assert new_keys.shape == (L, 2, H, width, D)
        for r, n in enumerate(counts):
            done[r] += n
            expected = reference[r].logits[0, done[r] - 1].numpy()
            worst = max(worst, float(np.abs(logits[r] - expected).max()))
            fresh = np.stack([new_keys[:, r, :, :n], new_values[:, r, :, :n]])
            caches[r] = np.concatenate([caches[r], fresh], axis=3)
    assert worst < 1e-4, worst

    for r, output in enumerate(reference):
        for layer in range(L):
            keys = output.past_key_values.layers[layer].keys[0].numpy()  # [H, T, D], after rotary
            values = output.past_key_values.layers[layer].values[0].numpy()
            np.testing.assert_allclose(caches[r][0, layer], keys, atol=1e-5)
            np.testing.assert_allclose(caches[r][1, layer], values, atol=1e-5)


def test_greedy_choice_is_decisive(lm, spec):
    """The random weights are drawn wide enough that the best allowed audio token leads the
    runner-up by far more than ONNX Runtime's ~1e-5 rounding: greedy tests cannot flip."""
    model, tokenizer = lm
    fmt = spec.format
    gaps, answers = [], []
    with torch.no_grad():
        for i, text in enumerate(SENTENCES[:3]):
            ids = _prompt(tokenizer, spec, f"{spec.voices[i % 2]}: {text}", [])
            output = model(torch.tensor([ids]), use_cache=True)
            answer = []
            for n in range(21):
                allowed = fmt.allowed(n, may_end=False)
                scores = output.logits[0, -1].double().numpy()[allowed]
                top = np.sort(scores)[-2:]
                gaps.append(top[1] - top[0])
                answer.append(int(allowed[np.argmax(scores)]))
                output = model(torch.tensor([[answer[-1]]]), past_key_values=output.past_key_values, use_cache=True)
            answers.append(tuple(answer))
    assert min(gaps) > 1e-3, min(gaps)
    assert len(set(answers)) == len(answers)  # each prompt steers its own speech
    codes = fmt.tokens_to_codes(answers[0])
    assert codes.shape == (TOKENS_PER_FRAME, 3) and len(np.unique(codes)) > 3


# --- SNAC ---------------------------------------------------------------------------------
def test_snac_encoder_equals_snac_encode(repository, codec):
    session = _session(repository / T.SNAC_ENCODER / "1" / "model.onnx")
    rng = np.random.default_rng(1)
    for samples in (int(1.3 * 24000), 3 * FRAME, FRAME + 1):
        audio = (0.3 * rng.standard_normal((2, samples))).astype(np.float32)
        (codes,) = session.run([T.AUDIO_CODES], {T.AUDIO: audio})
        with torch.no_grad():
            levels = codec.encode(torch.from_numpy(audio)[:, None])
        expected = levels_to_frame([level.numpy() for level in levels])
        assert codes.dtype == np.int64 and codes.shape == (2, TOKENS_PER_FRAME, -(-samples // FRAME))
        np.testing.assert_array_equal(codes, expected)
    assert len(np.unique(codes[:, 0])) > 1  # the codes follow the audio


def test_snac_decoder_equals_deterministic_torch_decode(repository, codec, monkeypatch):
    from snac.layers import NoiseBlock

    session = _session(repository / T.SNAC_DECODER / "1" / "model.onnx")
    codes = np.random.default_rng(2).integers(0, codec.codebook_size, (2, TOKENS_PER_FRAME, 9))
    (audio,) = session.run([T.AUDIO], {T.AUDIO_CODES: codes})
    assert audio.dtype == np.float32 and audio.shape == (2, 9 * FRAME)
    with torch.no_grad():
        ours = SnacDecoder(codec)(torch.from_numpy(codes)).numpy()
        noisy = codec.decode([torch.from_numpy(level) for level in frame_to_levels(codes)])[:, 0].numpy()
        monkeypatch.setattr(NoiseBlock, "forward", lambda self, x: x)  # SNAC's own decode, noise off
        quiet = codec.decode([torch.from_numpy(level) for level in frame_to_levels(codes)])[:, 0].numpy()
    assert np.abs(audio - ours).max() < 1e-4
    np.testing.assert_allclose(ours, quiet, atol=1e-6)
    assert np.abs(noisy - quiet).max() > 1e-4  # the noise it leaves out is real
    np.testing.assert_array_equal(audio, session.run([T.AUDIO], {T.AUDIO_CODES: codes})[0])


def test_decoding_in_windows_reproduces_a_one_shot_decode(repository, codec):
    """Frames [0, 20) decoded once, and in windows of 4 frames each decoded with up to 3 frames of
    left context and 3 of lookahead (fewer at the ends): the kept middles join into the one-shot
    audio. With one frame less of context on either side they do not."""
    session = _session(repository / T.SNAC_DECODER / "1" / "model.onnx")
    codes = np.random.default_rng(3).integers(0, codec.codebook_size, (1, TOKENS_PER_FRAME, 20))
    (full,) = session.run([T.AUDIO], {T.AUDIO_CODES: codes})

    def windowed(left, ahead, step=4):
        pieces = []
        for start in range(0, 20, step):
            lo, hi = max(0, start - left), min(20, start + step + ahead)
            (audio,) = session.run([T.AUDIO], {T.AUDIO_CODES: codes[:, :, lo:hi]})
            pieces.append(audio[:, (start - lo) * FRAME:(start - lo + step) * FRAME])
        return np.abs(np.concatenate(pieces, axis=1) - full).max()

    left, ahead = DECODER_LEFT_CONTEXT_FRAMES, DECODER_LOOKAHEAD_FRAMES
    assert (left, ahead) == (3, 3)
    assert windowed(left, ahead) < 1e-4
    assert windowed(left - 2, ahead) > 1e-4 and windowed(left, ahead - 2) > 1e-4


def test_external_data_is_gathered_into_one_file(repository, tmp_path):
    """A >2 GB graph comes out of the exporter with one file per tensor; the export re-saves it as
    graph + one .data file that ONNX Runtime loads (shown here on the tiny graph)."""
    import onnx

    from tritone.export.orpheus.export import gather_external_data

    scattered = tmp_path / "scattered" / LM_STEP_FILE
    scattered.parent.mkdir()
    model = onnx.load(str(repository / T.ORPHEUS / "1" / LM_STEP_FILE))
    onnx.save_model(model, str(scattered), save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)
    assert len(list(scattered.parent.iterdir())) > 5
    target = tmp_path / "gathered" / LM_STEP_FILE
    target.parent.mkdir()
    gather_external_data(scattered, target)
    assert sorted(p.name for p in target.parent.iterdir()) == [LM_STEP_FILE, LM_STEP_FILE + ".data"]

    rng = np.random.default_rng(4)
    inputs = {T.INPUT_IDS: rng.integers(0, 700, (1, 3)), T.POSITIONS: np.array([2]), T.LOGIT_INDEX: np.array([2]),
              T.PAST_KEYS: rng.standard_normal((2, 1, 2, 2, 16)).astype(np.float32)}
    inputs[T.PAST_VALUES] = inputs[T.PAST_KEYS]
    expected = _session(repository / T.ORPHEUS / "1" / LM_STEP_FILE).run([T.LOGITS], inputs)[0]
    np.testing.assert_array_equal(_session(target).run([T.LOGITS], inputs)[0], expected)


def test_lm_step_with_untied_embeddings_equals_transformers():
    """Checkpoints with a separate lm_head (not Orpheus 3B's case) take the module's other path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tritone.ensemble.orpheus.graphs import OrpheusLmStep

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=1, head_dim=8, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    model.config._attn_implementation = "eager"
    ids = torch.randint(0, 50, (1, 9))
    step = OrpheusLmStep(model)
    assert step.output_embedding is None
    empty = torch.zeros(2, 1, 1, 0, 8)
    with torch.no_grad():
        expected = model(ids).logits[0]
        _, keys, values = step(ids[:, :5], torch.tensor([0]), torch.tensor([4]), empty, empty)
        logits, _, _ = step(ids[:, 5:], torch.tensor([5]), torch.tensor([3]), keys, values)
    torch.testing.assert_close(logits[0], expected[-1], atol=1e-5, rtol=0)


def test_the_served_streaming_policy_covers_the_decoders_measured_context():
    from tritone.ensemble.orpheus.pipeline import ORPHEUS_POLICY

    assert ORPHEUS_POLICY.left_context >= DECODER_LEFT_CONTEXT_FRAMES
    assert ORPHEUS_POLICY.lookahead >= DECODER_LOOKAHEAD_FRAMES
