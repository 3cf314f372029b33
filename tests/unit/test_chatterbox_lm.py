"""Chatterbox's LM (T3) export: the step and conditioning graphs and the tables, against the package's own modules.

One tiny-random checkpoint and one export_lm, shared by the module. The reference is a greedy loop written
here over the package's modules, as T3.inference runs them (prepare_input_embeds with the guidance rows, the
BOS embedding appended, T3HuggingfaceBackend with its KV cache, cond + w * (cond - uncond), argmax, the
token fed back as speech_emb + speech_pos_emb); ours drives the exported step (ONNX Runtime, and the torch
runtime) row by row at each row's own position, two requests of different prompt lengths in every call.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
if importlib.util.find_spec("chatterbox") is None:
    pytest.skip("the chatterbox-tts package (the reference) is not installed", allow_module_level=True)
import tritone.export.chatterbox.reference  # noqa: E402,F401  (the torchaudio stand-in, then the package)

from tests.chatterbox_reference import reference_greedy as reference_greedy_of  # noqa: E402
from tritone.ensemble import tensors as T  # noqa: E402
from tritone.ensemble.chatterbox.onnx_lm import (  # noqa: E402
    CONDITIONING_FILE,
    LLAMA_CONFIG_FILE,
    LM_STEP_FILE,
    OnnxT3Conditioning,
    OnnxT3LanguageModel,
    load_tables,
)

STEPS = 30


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tritone.export.chatterbox.tiny import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("chatterbox_tiny"), "tiny")


@pytest.fixture(scope="module")
def models(checkpoint):
    from tritone.export.chatterbox.reference import load_reference

    return load_reference(checkpoint)


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    from tritone.export.chatterbox.lm import export_lm

    out = tmp_path_factory.mktemp("chatterbox_lm")
    return out, export_lm(models, out)


@dataclass
class Request:
    speaker: np.ndarray  # [256]
    prompt_tokens: np.ndarray  # [P] the voice's speech prompt
    exaggeration: float
    text: np.ndarray  # start_text .. stop_text
    cfg_weight: float


def _requests(models) -> list[Request]:
    """The checkpoint's built-in voice with a 40-token text, a random voice (a 97-token speech prompt) with 17."""
    hp = models.t3.hp
    rng = np.random.default_rng(3)
    conds = models.conds.t3

    def text(n):
        inner = rng.integers(1, hp.text_tokens_dict_size, n)
        inner[inner == hp.start_text_token] = 1
        return np.concatenate([[hp.start_text_token], inner, [hp.stop_text_token]]).astype(np.int64)

    return [
        Request(conds.speaker_emb.reshape(-1).numpy(), conds.cond_prompt_speech_tokens.reshape(-1).numpy(),
                float(conds.emotion_adv.reshape(-1)[0]), text(40), 0.5),
        Request(rng.standard_normal(hp.speaker_embed_size).astype(np.float32),
                rng.integers(0, hp.start_speech_token, 97), 0.9, text(17), 0.3),
    ]


def reference_greedy(t3, request: Request, steps: int = STEPS):
    return reference_greedy_of(t3, request.speaker, request.prompt_tokens, request.exaggeration, request.text,
                               request.cfg_weight, steps)


def prompt_embeddings(conditioning, tables, hp, request: Request) -> np.ndarray:
    """[2, P, D]: conditioning, text + text positions (zeroed text in the unconditioned row), start-of-speech twice."""
    cond = conditioning(request.speaker[None], request.prompt_tokens[None], np.array([[request.exaggeration]]))[0]
    n = len(request.text)
    positions = tables["text_pos_emb"][:n]
    start = tables["speech_emb"][hp.start_speech_token] + tables["speech_pos_emb"][0]
    rows = [np.concatenate([cond, tables["text_emb"][request.text] + positions, start[None], start[None]]),
            np.concatenate([cond, positions, start[None], start[None]])]
    return np.stack(rows).astype(np.float32)


def served_greedy(lm, conditioning, tables, hp, dims, requests, chunk: int | None, steps: int = STEPS):
    """Every request's greedy tokens, all requests in every call (2 rows each), each row at its own position:
    prompts in pieces of `chunk` inputs (None: whole), then one token a step; a row with fewer inputs than the
    call's width is padded; the cache is one padded buffer whose entries past a row's position are garbage."""
    prompts = [prompt_embeddings(conditioning, tables, hp, r) for r in requests]
    hidden = prompts[0].shape[2]
    rows = 2 * len(requests)
    capacity = max(p.shape[1] for p in prompts) + steps
    rng = np.random.default_rng(0)
    shape = (dims["num_layers"], rows, dims["num_kv_heads"], capacity, dims["head_dim"])
    keys, values = lm.zeros(shape), lm.zeros(shape)
    for buffer in (keys, values):  # masked entries: anything
        garbage = (1e3 * rng.standard_normal(shape)).astype(np.float32)
        buffer[...] = garbage if isinstance(buffer, np.ndarray) else torch.from_numpy(garbage).to(buffer.dtype)
    done = [0] * len(requests)
    tokens = [[] for _ in requests]
    calls = widths = 0
    while any(len(t) < steps for t in tokens):
        feeds = []
        for k, (prompt, fed) in enumerate(zip(prompts, done)):
            if fed < prompt.shape[1]:
                count = prompt.shape[1] - fed if chunk is None else min(chunk, prompt.shape[1] - fed)
                feeds.append(prompt[:, fed:fed + count])
            elif len(tokens[k]) < steps:
                token, step = tokens[k][-1], len(tokens[k])
                embed = tables["speech_emb"][token] + tables["speech_pos_emb"][step]
                feeds.append(np.repeat(embed[None, None], 2, axis=0))
            else:
                feeds.append(np.zeros((2, 0, hidden), np.float32))
        width = max(f.shape[1] for f in feeds)
        inputs = np.zeros((rows, width, hidden), np.float32)
        positions = np.zeros(rows, np.int64)
        logit_index = np.zeros(rows, np.int64)
        for k, feed in enumerate(feeds):
            inputs[2 * k:2 * k + 2, :feed.shape[1]] = feed
            positions[2 * k:2 * k + 2] = done[k]
            logit_index[2 * k:2 * k + 2] = max(feed.shape[1] - 1, 0)
        logits, new_keys, new_values = lm.step(inputs, positions, logit_index, keys, values)
        assert logits.shape == (rows, hp.speech_tokens_dict_size) and logits.dtype == np.float32
        calls, widths = calls + 1, max(widths, width)
        for k, feed in enumerate(feeds):
            count = feed.shape[1]
            if count == 0:
                continue
            at = slice(done[k], done[k] + count)
            keys[:, 2 * k:2 * k + 2, :, at] = new_keys[:, 2 * k:2 * k + 2, :, :count]
            values[:, 2 * k:2 * k + 2, :, at] = new_values[:, 2 * k:2 * k + 2, :, :count]
            done[k] += count
            if done[k] >= prompts[k].shape[1]:  # past its prompt: this call's logits give its next token
                cond, uncond = logits[2 * k].astype(np.float64), logits[2 * k + 1].astype(np.float64)
                tokens[k].append(int(np.argmax(cond + requests[k].cfg_weight * (cond - uncond))))
    return tokens, calls


@pytest.fixture(scope="module")
def references(models):
    return [reference_greedy(models.t3, r) for r in _requests(models)]


@pytest.fixture(scope="module")
def onnx_parts(exported):
    out, meta = exported
    return OnnxT3LanguageModel(out / LM_STEP_FILE), OnnxT3Conditioning(out / CONDITIONING_FILE), load_tables(out)


@pytest.mark.parametrize("chunk", [None, 16], ids=["whole-prompts", "prefill-in-16s"])
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_greedy_tokens_equal_the_reference_loop_for_two_batched_requests(models, checkpoint, exported, onnx_parts,
                                                                        references, runtime, chunk):
    out, meta = exported
    lm, conditioning, tables = onnx_parts
    if runtime == "torch":
        from tritone.ensemble.chatterbox.torch_lm import TorchT3LanguageModel

        lm = TorchT3LanguageModel(checkpoint, out / LLAMA_CONFIG_FILE, device="cpu", dtype="float32")
    requests = _requests(models)
    lengths = [prompt_embeddings(conditioning, tables, models.t3.hp, r).shape[1] for r in requests]
    assert lengths == [34 + 42 + 2, 34 + 19 + 2]
    tokens, calls = served_greedy(lm, conditioning, tables, models.t3.hp, meta["dims"], requests, chunk)
    for ours, (expected, _) in zip(tokens, references):
        assert ours == expected
    # the longer prompt took ceil(78 / 16) = 5 calls in pieces, then one call per further token
    assert calls == (STEPS + 4 if chunk == 16 else STEPS)


def test_the_reference_choices_are_decisive_and_the_requests_differ(references):
    """The best token leads the runner-up by far more than the graphs' ~1e-6 rounding, so the equalities above
    cannot hold or break by chance; each request speaks its own tokens, not one repeated."""
    gaps = [np.diff(np.sort(step)[-2:])[0] for _, combined in references for step in combined]
    assert min(gaps) > 1e-4, min(gaps)
    (first, _), (second, _) = references
    assert first != second and len(set(first)) > 10 and len(set(second)) > 10


def test_export_records_files_dims_and_bounded_parity(exported, models):
    out, meta = exported
    hp = models.t3.hp
    for name in [LM_STEP_FILE, CONDITIONING_FILE, LLAMA_CONFIG_FILE, *meta["files"]["tables"].values()]:
        assert (out / name).is_file(), name
    dims = meta["dims"]
    assert dims["speech_vocab_size"] == 8194 and dims["cond_length"] == 34
    assert (dims["start_speech_token"], dims["stop_speech_token"]) == (6561, 6562)
    assert (dims["start_text_token"], dims["stop_text_token"]) == (255, 0)
    tables = load_tables(out)
    assert tables["speech_emb"].shape == (8194, dims["hidden_size"]) and tables["speech_emb"].dtype == np.float32
    assert tables["text_pos_emb"].shape == (hp.max_text_tokens + 2, dims["hidden_size"])
    assert tables["speech_pos_emb"].shape == (hp.max_speech_tokens + 4, dims["hidden_size"])
    parity = meta["parity"]
    assert set(parity) == {"step_graph", "conditioning_graph", "conditioning", "prompt_embeds",
                           "first_forward_logits", "step_logits"}
    assert max(parity.values()) < 1e-4, parity


def test_graph_signatures(exported):
    """The names, element types and axes the family calls the graphs with."""
    out, meta = exported
    d = meta["dims"]
    L, H, Dh, D = d["num_layers"], d["num_kv_heads"], d["head_dim"], d["hidden_size"]

    def signature(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return ({i.name: (i.type, i.shape) for i in session.get_inputs()},
                {o.name: (o.type, o.shape) for o in session.get_outputs()})

    inputs, outputs = signature(out / LM_STEP_FILE)
    assert inputs == {T.INPUTS_EMBEDS: ("tensor(float)", ["rows", "width", D]),
                      T.POSITIONS: ("tensor(int64)", ["rows"]), T.LOGIT_INDEX: ("tensor(int64)", ["rows"]),
                      T.PAST_KEYS: ("tensor(float)", [L, "rows", H, "past", Dh]),
                      T.PAST_VALUES: ("tensor(float)", [L, "rows", H, "past", Dh])}
    assert outputs == {T.LOGITS: ("tensor(float)", ["rows", 8194]),
                       T.NEW_KEYS: ("tensor(float)", [L, "rows", H, "width", Dh]),
                       T.NEW_VALUES: ("tensor(float)", [L, "rows", H, "width", Dh])}
    inputs, outputs = signature(out / CONDITIONING_FILE)
    assert inputs == {T.SPEAKER_EMB: ("tensor(float)", ["batch", 256]),
                      T.PROMPT_SPEECH_TOKENS: ("tensor(int64)", ["batch", "prompt"]),
                      T.EXAGGERATION: ("tensor(float)", ["batch", 1])}
    assert outputs == {T.COND_EMBEDS: ("tensor(float)", ["batch", "cond", D])}  # cond: 34 (dims["cond_length"])
