"""Chatterbox's reference, as the tests run it: T3.inference's loop over the package's own modules with argmax
for sampling (prepare_input_embeds with the guidance rows, start-of-speech appended a second time,
T3HuggingfaceBackend with its KV cache, cond + w * (cond - uncond), the token fed back as speech_emb +
speech_pos_emb)."""

from __future__ import annotations

import numpy as np
import torch

import tritone.export.chatterbox.reference  # noqa: F401  (the torchaudio stand-in, then the package)


def reference_greedy(t3, speaker: np.ndarray, prompt_tokens: np.ndarray, exaggeration: float, text: np.ndarray,
                     cfg_weight: float, steps: int):
    """(tokens, guided logits per step) for `steps` steps. text: the ids with start_text / stop_text around them."""
    from chatterbox.models.t3.inference.t3_hf_backend import T3HuggingfaceBackend
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    hp = t3.hp
    cond = T3Cond(speaker_emb=torch.from_numpy(np.asarray(speaker, np.float32))[None],
                  cond_prompt_speech_tokens=torch.from_numpy(np.asarray(prompt_tokens, np.int64))[None],
                  emotion_adv=exaggeration * torch.ones(1, 1, 1))
    text = torch.from_numpy(np.asarray(text, np.int64))[None].repeat(2, 1)
    bos = torch.full((2, 1), hp.start_speech_token)
    tokens, combined = [], []
    with torch.inference_mode():
        embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text, speech_tokens=bos, cfg_weight=cfg_weight)
        bos_embed = t3.speech_emb(bos[:1]) + t3.speech_pos_emb.get_fixed_embedding(0)
        backend = T3HuggingfaceBackend(config=t3.cfg, llama=t3.tfmr, speech_enc=t3.speech_emb,
                                       speech_head=t3.speech_head)
        output = backend(inputs_embeds=torch.cat([embeds, torch.cat([bos_embed, bos_embed])], dim=1),
                         past_key_values=None, use_cache=True, output_hidden_states=True, return_dict=True)
        for i in range(steps):
            logits = output.logits[:, -1]
            guided = logits[0] + cfg_weight * (logits[0] - logits[1])
            combined.append(guided.double().numpy())
            tokens.append(int(torch.argmax(guided)))
            fed = t3.speech_emb(torch.tensor([[tokens[-1]]])) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
            output = backend(inputs_embeds=torch.cat([fed, fed]), past_key_values=output.past_key_values,
                             use_cache=True, output_hidden_states=True, return_dict=True)
    return tokens, combined
