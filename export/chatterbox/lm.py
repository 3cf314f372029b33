"""Export Chatterbox's LM (T3): the step graph, the conditioning graph and the embedding tables, each checked.

    export_lm(models, out_dir) writes into out_dir:
        lm_step.onnx            inputs_embeds [R, W, D], positions [R], logit_index [R], past keys/values
                                -> logits [R, 8194], new keys/values (chunked prefill and decode, rows at their positions)
        lm_conditioning.onnx    speaker_emb [B, 256], prompt_speech_tokens [B, P], exaggeration [B, 1] -> cond_embeds
        text_emb.npy, text_pos_emb.npy, speech_emb.npy, speech_pos_emb.npy   float32 [entries, D]
        lm_llama_config.json    the backbone's config (the torch runtime builds the step from it + t3_cfg.safetensors)

Each graph is checked against its torch module (export_graph), then against the package's own inference
path: the conditioning against `T3.prepare_conditioning`, and the step, driven with the tables, against
`T3.inference`'s first forward (the CFG pair over the whole prompt) and the single-token steps after it
(T3HuggingfaceBackend with its KV cache). Every difference is printed and bounded; past the bound it raises.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.graphs_lm import T3Conditioning, T3LmStep, tables
from tritone.ensemble.chatterbox.onnx_lm import (
    CONDITIONING_FILE,
    LLAMA_CONFIG_FILE,
    LM_STEP_FILE,
    TABLE_NAMES,
    OnnxT3Conditioning,
    OnnxT3LanguageModel,
    load_tables,
    table_file,
)
from tritone.export.onnx_graph import STEP_ROWS, STEP_WIDTH, ParityError, export_graph, export_llm_step

__all__ = ["export_lm", "reference_parity"]


def export_lm(models, out_dir: Path, *, cfg_weight: float = 0.5, steps: int = 4, tolerance: float = 1e-4) -> dict:
    """Write T3's graphs and tables into out_dir and check them (see the module's doc); `models`: what
    load_reference gives (its `.t3`), or a T3. Returns the files, the dimensions the family needs, the parity."""
    t3 = getattr(models, "t3", models).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    hp, config = t3.hp, t3.cfg
    layers, kv_heads = config.num_hidden_layers, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    gen = torch.Generator().manual_seed(0)

    print("exporting the T3 LM step ...")
    step_diff = export_llm_step(
        T3LmStep.of(t3), T.INPUTS_EMBEDS, torch.randn(STEP_ROWS, STEP_WIDTH, config.hidden_size, generator=gen),
        (layers, kv_heads, head_dim), out / LM_STEP_FILE, gen)
    print("exporting the T3 conditioning ...")
    prompt = hp.speech_cond_prompt_len
    cond_diff = export_graph(
        T3Conditioning(t3),
        {T.SPEAKER_EMB: torch.randn(2, hp.speaker_embed_size, generator=gen),
         T.PROMPT_SPEECH_TOKENS: torch.randint(0, hp.start_speech_token, (2, prompt), generator=gen),
         T.EXAGGERATION: torch.tensor([[0.5], [0.9]])},
        [T.COND_EMBEDS],
        {T.SPEAKER_EMB: {0: "batch"}, T.PROMPT_SPEECH_TOKENS: {0: "batch", 1: "prompt"}, T.EXAGGERATION: {0: "batch"},
         T.COND_EMBEDS: {0: "batch", 1: "cond"}},
        out / CONDITIONING_FILE,
    )
    for name, table in tables(t3).items():
        np.save(out / table_file(name), table.numpy())
    (out / LLAMA_CONFIG_FILE).write_text(config.to_json_string())

    parity = reference_parity(t3, out, voice=getattr(getattr(models, "conds", None), "t3", None),
                              cfg_weight=cfg_weight, steps=steps, tolerance=tolerance)
    parity.update(step_graph=step_diff, conditioning_graph=cond_diff)
    cond_length = parity.pop("cond_length")
    print(f"  T3 exported in {time.perf_counter() - started:.1f}s")
    return {
        "files": {"step": LM_STEP_FILE, "conditioning": CONDITIONING_FILE, "llama_config": LLAMA_CONFIG_FILE,
                  "tables": {name: table_file(name) for name in TABLE_NAMES}},
        "dims": {"num_layers": layers, "num_kv_heads": kv_heads, "head_dim": head_dim,
                 "hidden_size": config.hidden_size, "speech_vocab_size": hp.speech_tokens_dict_size,
                 "text_vocab_size": hp.text_tokens_dict_size, "cond_length": cond_length,
                 "max_text_tokens": hp.max_text_tokens, "max_speech_tokens": hp.max_speech_tokens,
                 "speech_cond_prompt_len": prompt, "speaker_embed_size": hp.speaker_embed_size,
                 "start_text_token": hp.start_text_token, "stop_text_token": hp.stop_text_token,
                 "start_speech_token": hp.start_speech_token, "stop_speech_token": hp.stop_speech_token},
        "parity": parity,
    }


def _bounded(what: str, ours: np.ndarray, reference: np.ndarray, tolerance: float) -> float:
    if ours.shape != reference.shape:
        raise ParityError(f"{what}: shape {ours.shape}, the reference gives {reference.shape}")
    diff = float(np.max(np.abs(ours - reference)))
    bound = tolerance * max(1.0, float(np.max(np.abs(reference))))
    if not diff <= bound:  # also catches NaN
        raise ParityError(f"{what} differs from the reference by {diff:.3e} (bound {bound:.3e})")
    return diff


def reference_parity(t3, folder: Path, *, voice=None, text_tokens=None, cfg_weight: float = 0.5, steps: int = 4,
                     tolerance: float = 1e-4) -> dict:
    """The exported graphs and tables in `folder` against the package's inference path.

    voice: a T3Cond (the checkpoint's built-in one), else a random speaker and speech prompt. The prompt is
    built as T3.inference builds it (conditioning, start_text .. stop_text, the start-of-speech token of
    prepare_input_embeds and the BOS embedding it appends, a CFG pair whose second row has its text
    embeddings zeroed); the step is fed the same embeddings computed from the exported tables. After the
    first forward, `steps` tokens (the reference's CFG argmax) are fed one at a time to both.
    """
    from chatterbox.models.t3.inference.t3_hf_backend import T3HuggingfaceBackend  # the package T3 came from
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    hp = t3.hp
    gen = torch.Generator().manual_seed(1)
    if voice is None:
        voice = T3Cond(speaker_emb=torch.randn(1, hp.speaker_embed_size, generator=gen),
                       cond_prompt_speech_tokens=torch.randint(0, hp.start_speech_token, (1, hp.speech_cond_prompt_len),
                                                               generator=gen),
                       emotion_adv=0.5 * torch.ones(1, 1, 1))
    if text_tokens is None:
        inner = torch.randint(1, hp.text_tokens_dict_size, (24,), generator=gen)
        inner[inner == hp.start_text_token] = 1
        text_tokens = torch.cat([torch.tensor([hp.start_text_token]), inner, torch.tensor([hp.stop_text_token])])
    text = torch.as_tensor(text_tokens, dtype=torch.long).reshape(1, -1)
    fresh = lambda: T3Cond(speaker_emb=voice.speaker_emb, cond_prompt_speech_tokens=voice.cond_prompt_speech_tokens,  # noqa: E731
                           emotion_adv=voice.emotion_adv)
    result = {}
    with torch.inference_mode():
        # conditioning: the graph against T3.prepare_conditioning
        reference_cond = t3.prepare_conditioning(fresh()).float().numpy()
        ours_cond = OnnxT3Conditioning(folder / CONDITIONING_FILE)(
            voice.speaker_emb.reshape(1, -1).numpy(), voice.cond_prompt_speech_tokens.reshape(1, -1).numpy(),
            torch.as_tensor(voice.emotion_adv, dtype=torch.float32).reshape(1, 1).numpy())
        result["conditioning"] = _bounded("lm_conditioning.onnx", ours_cond, reference_cond, tolerance)
        result["cond_length"] = int(ours_cond.shape[1])

        # the prompt: T3.inference's
        bos = torch.full((2, 1), hp.start_speech_token, dtype=torch.long)
        embeds, _ = t3.prepare_input_embeds(t3_cond=fresh(), text_tokens=text.repeat(2, 1), speech_tokens=bos,
                                            cfg_weight=cfg_weight)
        bos_embed = t3.speech_emb(bos[:1]) + t3.speech_pos_emb.get_fixed_embedding(0)
        reference_inputs = torch.cat([embeds, torch.cat([bos_embed, bos_embed])], dim=1)
        backend = T3HuggingfaceBackend(config=t3.cfg, llama=t3.tfmr, speech_enc=t3.speech_emb,
                                       speech_head=t3.speech_head)
        output = backend(inputs_embeds=reference_inputs, past_key_values=None, use_cache=True,
                         output_hidden_states=True, return_dict=True)

        # ours: the same prompt from the graph's conditioning and the tables
        table = load_tables(folder)
        n = text.shape[1]
        text_rows = table["text_emb"][text[0].numpy()]
        start = table["speech_emb"][hp.start_speech_token] + table["speech_pos_emb"][0]
        rows = [np.concatenate([ours_cond[0], text_part + table["text_pos_emb"][:n], start[None], start[None]])
                for text_part in (text_rows, 0.0 * text_rows if cfg_weight > 0 else text_rows)]
        inputs = np.stack(rows).astype(np.float32)  # [2, prompt, D]
        result["prompt_embeds"] = _bounded("prompt embeddings from the tables", inputs,
                                           reference_inputs.float().numpy(), tolerance)
        lm = OnnxT3LanguageModel(folder / LM_STEP_FILE)
        config = t3.cfg
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        empty = lm.zeros((config.num_hidden_layers, 2, config.num_key_value_heads, 0, head_dim))
        length = inputs.shape[1]
        logits, keys, values = lm.step(inputs, np.zeros(2, np.int64), np.full(2, length - 1, np.int64), empty, empty)
        result["first_forward_logits"] = _bounded("the first forward's logits", logits,
                                                  output.logits[:, -1].float().numpy(), tolerance)
        worst = 0.0
        past = output.past_key_values
        for i in range(steps):
            step_logits = output.logits[:, -1].float()
            token = int(torch.argmax(step_logits[0] + cfg_weight * (step_logits[0] - step_logits[1])))
            fed = t3.speech_emb(torch.tensor([[token]])) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
            output = backend(inputs_embeds=torch.cat([fed, fed]), past_key_values=past, use_cache=True,
                             output_hidden_states=True, return_dict=True)
            past = output.past_key_values
            ours_fed = (table["speech_emb"][token] + table["speech_pos_emb"][i + 1])[None, None].repeat(2, 0)
            logits, new_keys, new_values = lm.step(ours_fed.astype(np.float32), np.full(2, length, np.int64),
                                                   np.zeros(2, np.int64), keys, values)
            keys, values = np.concatenate([keys, new_keys], axis=3), np.concatenate([values, new_values], axis=3)
            length += 1
            worst = max(worst, _bounded(f"step {i + 1}'s logits", logits, output.logits[:, -1].float().numpy(),
                                        tolerance))
        result["step_logits"] = worst
    print("  parity with the reference (max |ours - reference|): " + ", ".join(
        f"{name} {value:.2e}" for name, value in result.items() if name != "cond_length"))
    return result
