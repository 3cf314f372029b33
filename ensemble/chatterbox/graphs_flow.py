"""Torch modules that become Chatterbox's token-to-audio ONNX graphs (S3Gen's flow and HiFT).

They reuse the weights (sub-modules) of chatterbox's `CausalMaskedDiffWithXvec` and
`HiFTGenerator` and compute what `flow.inference(..., finalize=True)` and `mel2wav.inference`
compute, rearranged for serving:

- `ChatterboxFlow`: speech tokens + the voice's prompt (tokens, mel, x-vector) + starting noise
  -> the mel of the new tokens. The reference concatenates prompt and new tokens, encodes them
  (conformer, x2 upsampling, conformer) and integrates the flow ODE from noise over the whole
  (prompt + new) length with `EULER_STEPS` Euler steps on the cosine t schedule, classifier-free
  guidance inside (rows [conditioned, unconditioned], velocity (1 + 0.7) c - 0.7 u), the prompt
  mel as the condition of the prompt frames. Rows of a batch have their own prompt and token
  lengths: each row is packed as [its prompt, its tokens] and padded on the right; attention
  masks the padding and every convolution that looks right (the encoder's 3-token
  pre-lookahead) sees zeros there, as a row alone sees the end of its sequence.
  The starting noise comes in two inputs aligned with what they noise: PROMPT_NOISE [B, 80,
  2 Tp] for the prompt frames and FLOW_NOISE [B, 80, 2 T] for the new frames. The reference draws
  one [B, 80, 2 (Tp + T)] tensor inside; cut at 2 Tp, it is these two (the parity tests do so).
  Served, both come from the request's seed (ensemble/chatterbox/noise.py): the prompt's part
  is the same for every window of a request, the new part is a function of the absolute mel
  frame, so a seeded request is reproducible and a window decoded with context sees the same
  noise as the one-shot decode at the same frames.
- `ChatterboxVocoder`: HiFT mel [B, 80, F] -> 24 kHz audio [B, 480 F]. Its STFT (of the
  source signal) and iSTFT are fixed convolutions (n_fft 16, hop 4, periodic Hann). Tried first:
  with the TorchScript exporter (opset 17) torch.stft fails ('STFT does not currently support
  complex types') and torch.istft has no export (aten::complex); the dynamo exporter writes
  both, but ONNX Runtime 1.32 refuses its iSTFT graph (INVALID_GRAPH: a ScatterND with an int32
  index). Rows have their own lengths (MEL_LENGTHS): every convolution input is masked past a
  row's length and the source's STFT reflects at the row's own end, so a padded row equals the
  row alone.
  The reference's source is random at every call: harmonic phase offsets uniform in (-pi, pi)
  (the fundamental's 0) and Gaussian noise added to the 9 harmonics before their linear mix.
  Here both are inputs: SOURCE_PHASE [B, 9], each harmonic's phase in cycles before the first
  sample, and SOURCE_NOISE [B, 480 F], one standard normal per sample. (The 9 noises only reach
  the output through the linear mix w . n, which is ||w|| times one standard normal: one per
  sample is the same distribution; the parity test feeds (w . n) / ||w|| of the reference's own
  draws.) The source's phase is a running sum of f0 from the start of the stream, so the graph
  also returns FRAME_PHASE [B, 9, F + 1], each harmonic's phase before each frame and after the
  last: a window that starts at frame k of the previous window (0 <= k <= its frames) takes
  FRAME_PHASE[:, :, k] of that window as its SOURCE_PHASE; the noise is a function of the
  absolute sample (noise.py).

Streaming reach (export/chatterbox/reach.py; random weights: tiny and small-random, the released
architecture). A chunk of tokens is decoded as the served ensemble does it: the flow on the
chunk plus FLOW_LEFT_CONTEXT_TOKENS before and FLOW_LOOKAHEAD_TOKENS after, with the voice's
whole prompt, then the vocoder on that window's whole mel; the chunk's frames are kept.
- The vocoder alone (one-shot mel, windows in mel frames; tiny and small alike): 16 frames left
  and 12 ahead give the one-shot audio (max |difference| 7e-8); 8 and 8 give 1e-4; 4 frames
  either side 2e-3; none on one side 5e-2 (its F0 predictor, conv_pre and the source's phase
  need ~5 frames each way, the upsampling stack the rest). Hence 8 tokens left, 6 ahead.
- The flow: its conformer's and its estimator's attention is global, so no context makes a
  window exact, and with random weights (attention near uniform over the window and the
  prompt) every frame moves with every token: max |mel difference| (mel up to ~6) on tiny
  with a 200-token voice prompt, chunks of 12 then 24 tokens: 8 left / 3 ahead 1.83, 8 / 6
  1.51 (the same with 16, 32 or all tokens left), all / 12 1.21; random 50-token prompt: all
  left / 24 ahead 0.96, all / all 0 (the one-shot decode). Small-random, 50-token prompt,
  chunks of 12: 8 / 3 and 8 / 6 1.24.
- The waveform (what is heard), max |streamed - one-shot|: tiny, voice prompt, 8 / 6: 3.2e-3
  (audio up to 0.10); 8 / 3: 3.5e-3; 0 / 0: 9.1e-2. Small-random, 8 / 6 and 8 / 3: 2.3e-3
  (audio up to 0.066). STREAMED_AUDIO_BOUND (1e-2) holds the tiny case in tests/unit/test_chatterbox_flow.py.
  These are random weights' figures; the released weights (not loadable here) will differ:
  attention more local than random's would make the flow's seams smaller, not guaranteed.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

MEL_BINS = 80
TOKEN_MEL_RATIO = 2  # mel frames per speech token (25 Hz tokens, 50 Hz mel)
SAMPLE_RATE = 24000
FRAME_SAMPLES = 480  # audio samples per mel frame (HiFT: 8 x 5 x 3 upsampling, iSTFT hop 4)
EULER_STEPS = 10  # the reference's default n_timesteps
PRE_LOOKAHEAD_TOKENS = 3  # the encoder's pre-lookahead convolution sees 3 tokens to the right
HARMONICS = 9  # HiFT's sine source: the fundamental and 8 overtones



def cosine_t_span(steps: int) -> torch.Tensor:
    """The reference's t schedule, float32: 1 - cos(linspace(0, 1, steps + 1) * pi / 2)."""
    return 1 - torch.cos(torch.linspace(0, 1, steps + 1, dtype=torch.float32) * 0.5 * torch.pi)


def _positions(lengths: torch.Tensor, size) -> torch.Tensor:
    """[B, size] bool: position < length (the row's valid prefix)."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def _pack(first: torch.Tensor, second: torch.Tensor, first_lengths: torch.Tensor) -> torch.Tensor:
    """Along the last axis, row b = first[b, ..., :first_lengths[b]] then second[b] (then padding).

    first [B, ..., N1], second [B, ..., N2] -> [B, ..., N1 + N2]; what lies past a row's two
    valid parts is garbage the caller masks.
    """
    n1, total = first.shape[-1], first.shape[-1] + second.shape[-1]
    j = torch.arange(total, device=first.device)[None, :]
    index = torch.where(j < first_lengths[:, None], j, n1 + j - first_lengths[:, None]).clamp(max=total - 1)
    both = torch.cat([first, second], dim=-1)
    index = index.view(index.shape[0], *([1] * (both.dim() - 2)), total).expand_as(both)
    return torch.gather(both, -1, index)


def _relative_positions(length, d_model: int, device) -> torch.Tensor:
    """espnet's relative position encoding for `length` positions: [1, 2 length - 1, d_model],
    relative positions length-1 .. -(length-1), sin and cos interleaved (computed here rather than
    sliced from the module's 5000-position table, which would be a 20 MB constant per use)."""
    relative = (length - 1 - torch.arange(2 * length - 1, device=device)).to(torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / d_model))
    angles = relative * div
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(1, -1, d_model)


class ChatterboxFlow(nn.Module):
    """speech_tokens [B, T] int64, speech_token_lengths [B], prompt_tokens [B, Tp] int64,
    prompt_token_lengths [B], prompt_mel [B, 2 Tp, 80], xvector [B, 192],
    prompt_noise [B, 80, 2 Tp], flow_noise [B, 80, 2 T] -> mel [B, 80, 2 T], mel_lengths [B]
    (2 speech_token_lengths: the vocoder's MEL_LENGTHS, so that an ensemble wires one to the other).

    Row b's mel is mel[b, :, :2 * speech_token_lengths[b]] (zeros after). Its prompt is
    prompt_tokens[b, :prompt_token_lengths[b]] with prompt_mel[b, :2 * prompt_token_lengths[b]]
    and prompt_noise[b, :, :2 * prompt_token_lengths[b]].
    """

    def __init__(self, flow, steps: int = EULER_STEPS):
        super().__init__()
        self.flow = flow
        self.encoder = flow.encoder
        self.estimator = flow.decoder.estimator
        if len(self.estimator.down_blocks) != 1:
            raise ValueError("ChatterboxFlow supports the estimator with one level (channels [c]), as S3Gen's")
        self.cfg_rate = float(flow.decoder.inference_cfg_rate)
        self.steps = int(steps)
        t_span = cosine_t_span(self.steps)
        self.register_buffer("t_span", t_span, persistent=False)

    # --- the encoder: tokens -> mu ------------------------------------------------------
    def _conformer(self, layers, x, valid):
        mask = valid[:, None, :]  # [B, 1, L] keys
        pos_emb = _relative_positions(x.shape[1], x.shape[2], x.device)
        for layer in layers:
            x = layer(x, mask, pos_emb, mask)[0]
        return x

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] (valid prefix `lengths`) -> mu [B, 80, 2 L]."""
        enc = self.encoder
        valid = _positions(lengths, tokens.shape[1])
        x = self.flow.input_embedding(tokens) * valid[..., None]
        x = enc.embed.out(x) * enc.embed.pos_enc.xscale
        x = x * valid[..., None]  # a row alone has zeros past its end for the lookahead conv to see
        x = enc.pre_lookahead_layer(x)
        x = self._conformer(enc.encoders, x, valid)
        x, up_lengths = enc.up_layer(x.transpose(1, 2), lengths)
        x = x.transpose(1, 2)
        up_valid = _positions(up_lengths, x.shape[1])
        x = enc.up_embed.out(x) * enc.up_embed.pos_enc.xscale
        x = self._conformer(enc.up_encoders, x, up_valid)
        x = enc.after_norm(x)
        return self.flow.encoder_proj(x).transpose(1, 2)

    # --- the estimator: one velocity evaluation ------------------------------------------
    def _attention(self, block, x, bias):
        attn = block.attn1
        b, n, _ = x.shape
        h = attn.heads
        q = attn.to_q(x).view(b, n, h, -1).transpose(1, 2)
        k = attn.to_k(x).view(b, n, h, -1).transpose(1, 2)
        v = attn.to_v(x).view(b, n, h, -1).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * attn.scale + bias[:, None]  # bias [B, 1, L]
        out = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, n, -1)
        return attn.to_out[0](out)

    def _transformers(self, blocks, x, bias):
        x = x.transpose(1, 2)
        for block in blocks:
            x = x + self._attention(block, block.norm1(x), bias)
            x = x + block.ff(block.norm3(x))
        return x.transpose(1, 2)

    def velocity(self, x, mu, spks, cond, mask, bias, temb):
        est = self.estimator
        h = torch.cat([x, mu, spks[:, :, None].expand(-1, -1, x.shape[2]), cond], dim=1)
        resnet, blocks, down = est.down_blocks[0]
        h = self._transformers(blocks, resnet(h, mask, temb), bias)
        skip = h
        h = down(h * mask)
        for resnet, blocks in est.mid_blocks:
            h = self._transformers(blocks, resnet(h, mask, temb), bias)
        resnet, blocks, up = est.up_blocks[0]
        h = self._transformers(blocks, resnet(torch.cat([h, skip], dim=1), mask, temb), bias)
        h = up(h * mask)
        h = est.final_block(h, mask)
        return est.final_proj(h * mask) * mask

    def forward(self, speech_tokens, speech_token_lengths, prompt_tokens, prompt_token_lengths, prompt_mel,
                xvector, prompt_noise, flow_noise):
        rows = speech_tokens.shape[0]
        ratio = TOKEN_MEL_RATIO
        tokens = _pack(prompt_tokens, speech_tokens, prompt_token_lengths)
        lengths = prompt_token_lengths + speech_token_lengths
        frames = tokens.shape[1] * ratio
        valid = _positions(lengths * ratio, frames)
        mask = valid[:, None, :].to(torch.float32)  # [B, 1, 2 L]
        mu = self.encode(tokens, lengths)
        prompt_frames = prompt_token_lengths * ratio
        prompt_valid = _positions(prompt_frames, frames)[:, None, :]
        cond = _pack(prompt_mel.transpose(1, 2), torch.zeros_like(flow_noise), prompt_frames) * prompt_valid
        x = _pack(prompt_noise, flow_noise, prompt_frames)
        spks = self.flow.spk_embed_affine_layer(F.normalize(xvector, dim=1))

        # guidance: rows [conditioned; unconditioned (no mu, speaker, prompt mel)] in one batch
        mu2 = torch.cat([mu, torch.zeros_like(mu)], dim=0)
        spks2 = torch.cat([spks, torch.zeros_like(spks)], dim=0)
        cond2 = torch.cat([cond, torch.zeros_like(cond)], dim=0)
        mask2 = torch.cat([mask, mask], dim=0)
        bias2 = (1.0 - mask2) * -1.0e10
        est = self.estimator
        for step in range(self.steps):
            t = self.t_span[step:step + 1]
            temb = est.time_mlp(est.time_embeddings(t).to(t.dtype))  # [1, time_dim]: the same for every row
            v = self.velocity(torch.cat([x, x], dim=0), mu2, spks2, cond2, mask2, bias2, temb)
            v_cond, v_uncond = v[:rows], v[rows:]
            v = (1.0 + self.cfg_rate) * v_cond - self.cfg_rate * v_uncond
            x = x + (self.t_span[step + 1] - self.t_span[step]) * v
        # row b's new frames start after its prompt's
        out_frames = speech_tokens.shape[1] * ratio
        j = torch.arange(out_frames, device=x.device)[None, :]
        index = (prompt_frames[:, None] + j).clamp(max=frames - 1)
        mel = torch.gather(x, 2, index[:, None, :].expand(-1, x.shape[1], -1))
        mel_lengths = speech_token_lengths * ratio
        return mel * _positions(mel_lengths, out_frames)[:, None, :], mel_lengths


# --- the vocoder ------------------------------------------------------------------------
def _hann(n_fft: int) -> torch.Tensor:
    """scipy's get_window('hann', n, fftbins=True): periodic Hann, float64 then float32."""
    n = torch.arange(n_fft, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)).to(torch.float32)


def stft_kernel(n_fft: int) -> torch.Tensor:
    """Conv1d weight [2 (n_fft/2 + 1), 1, n_fft]: windowed real DFT rows, real parts then imaginary."""
    bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    w = _hann(n_fft).to(torch.float64)
    angle = 2 * math.pi * k * n / n_fft
    return torch.cat([torch.cos(angle) * w, -torch.sin(angle) * w]).to(torch.float32)[:, None, :]


def istft_kernel(n_fft: int) -> torch.Tensor:
    """ConvTranspose1d weight [2 (n_fft/2 + 1), 1, n_fft]: the one-sided inverse DFT times the window
    (torch.istft's irfft: the imaginary parts of the DC and Nyquist bins are ignored)."""
    bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    w = _hann(n_fft).to(torch.float64)
    scale = torch.full((bins, 1), 2.0, dtype=torch.float64)
    scale[0] = scale[-1] = 1.0
    angle = 2 * math.pi * k * n / n_fft
    real, imag = scale * torch.cos(angle) * w / n_fft, -scale * torch.sin(angle) * w / n_fft
    imag[0] = imag[-1] = 0.0
    return torch.cat([real, imag]).to(torch.float32)[:, None, :]


def _conv(conv, x, mask):
    return conv(x * mask)


def _resblock(block, x, mask):
    """HiFT's ResBlock with every convolution's input masked past the row's length."""
    for a1, c1, a2, c2 in zip(block.activations1, block.convs1, block.activations2, block.convs2):
        xt = c1(a1(x) * mask)
        x = c2(a2(xt) * mask) + x
    return x


class ChatterboxVocoder(nn.Module):
    """mel [B, 80, F], mel_lengths [B] int64, source_phase [B, 9] (cycles), source_noise [B, 480 F]
    -> audio [B, 480 F] in [-0.99, 0.99], frame_phase [B, 9, F + 1] (cycles in [0, 1)): each harmonic's
    phase before frame k, k = 0 .. F (F: after the last frame; past a row's length its last value).

    Row b's audio is audio[b, :480 mel_lengths[b]] (zeros after). No fade: the reference fades
    the first 40 ms of an utterance in (trim_fade); the pipeline does that on a stream's start.
    """

    def __init__(self, hift):
        super().__init__()
        self.hift = hift
        n_fft, hop = int(hift.istft_params["n_fft"]), int(hift.istft_params["hop_len"])
        self.n_fft, self.hop = n_fft, hop
        self.upsample_rates = [int(u.stride[0]) for u in hift.ups]
        self.frame_samples = int(math.prod(self.upsample_rates)) * hop
        sine = hift.m_source.l_sin_gen
        self.harmonics = int(sine.harmonic_num) + 1
        self.sine_amp, self.noise_std = float(sine.sine_amp), float(sine.noise_std)
        self.voiced_threshold, self.sample_rate = float(sine.voiced_threshold), float(sine.sampling_rate)
        self.register_buffer("stft_weight", stft_kernel(n_fft), persistent=False)
        self.register_buffer("istft_weight", istft_kernel(n_fft), persistent=False)
        self.register_buffer("window_sq", (_hann(n_fft) ** 2)[None, None, :], persistent=False)

    def f0(self, mel, mask):
        """[B, F] Hz: the F0 predictor, each convolution's input masked."""
        x = mel
        for layer in self.hift.f0_predictor.condnet:
            x = layer(x * mask) if isinstance(layer, nn.Conv1d) else layer(x)
        return torch.abs(self.hift.f0_predictor.classifier(x.transpose(1, 2)).squeeze(-1))

    def source(self, f0, source_phase, source_noise):
        """The sine/noise source [B, 480 F] and each harmonic's phase before each frame and after the
        last [B, 9, F + 1] (f0 is 0 past a row's length: its phase stays there)."""
        rows, frames = f0.shape
        fs = self.frame_samples
        harmonic = torch.arange(1, self.harmonics + 1, dtype=torch.float32, device=f0.device)
        step = f0 / self.sample_rate  # cycles per sample of the fundamental, per frame [B, F]
        per_frame = torch.remainder(step * fs, 1.0)
        before = torch.cat([torch.zeros_like(per_frame[:, :1]), torch.cumsum(per_frame, dim=1)], dim=1)  # [B, F + 1]
        before = torch.remainder(before, 1.0)
        frame_phase = torch.remainder(source_phase[:, :, None] + harmonic[None, :, None] * before[:, None, :], 1.0)
        within = torch.arange(1, fs + 1, dtype=torch.float32, device=f0.device)  # sample j of a frame: j + 1 steps
        cycles = frame_phase[..., :frames, None] + harmonic[None, :, None, None] * step[:, None, :, None] * within
        sines = self.sine_amp * torch.sin(2 * math.pi * torch.remainder(cycles, 1.0))  # [B, 9, F, fs]
        voiced = (f0 > self.voiced_threshold).to(torch.float32)[:, None, :, None]  # [B, 1, F, 1]
        noise_amp = voiced * self.noise_std + (1 - voiced) * self.sine_amp / 3
        linear = self.hift.m_source.l_linear
        weight = linear.weight[0]  # [9]
        mixed = torch.einsum("h,bhfs->bfs", weight, sines * voiced) + linear.bias
        mixed = mixed + noise_amp[:, 0] * torch.linalg.vector_norm(weight) * source_noise.view(rows, frames, fs)
        return torch.tanh(mixed).reshape(rows, frames * fs), frame_phase

    def stft(self, s, lengths):
        """torch.stft(center=True, reflect) of each row's first `lengths` samples: [B, 18, S / hop + 1]."""
        samples, pad = s.shape[1], self.n_fft // 2
        n = torch.arange(samples + 2 * pad, device=s.device)[None, :] - pad
        n = torch.abs(n)  # reflect at the start
        end = lengths[:, None] - 1
        n = torch.where(n > end, 2 * end - n, n).clamp(0, samples - 1)  # reflect at the row's end
        padded = torch.gather(s, 1, n)
        return F.conv1d(padded[:, None, :], self.stft_weight, stride=self.hop)

    def istft(self, magnitude, phase, frame_mask):
        """torch.istft(center=True) as a transposed convolution; frames past a row's end are zero and
        left out of the window normalisation, as a row alone has none."""
        magnitude = torch.clip(magnitude, max=1e2)
        spec = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1) * frame_mask
        audio = F.conv_transpose1d(spec, self.istft_weight, stride=self.hop)
        envelope = F.conv_transpose1d(frame_mask, self.window_sq, stride=self.hop)
        pad = self.n_fft // 2
        samples = (spec.shape[2] - 1) * self.hop
        audio = audio[:, 0, pad:pad + samples]
        envelope = envelope[:, 0, pad:pad + samples]
        return audio / torch.where(envelope > 1e-11, envelope, torch.ones_like(envelope))

    def forward(self, mel, mel_lengths, source_phase, source_noise):
        hift = self.hift
        frames = mel.shape[2]
        masks, size, lengths = [], frames, mel_lengths
        mask0 = _positions(mel_lengths, frames)[:, None, :].to(torch.float32)
        f0 = self.f0(mel, mask0) * mask0[:, 0]
        s, frame_phase = self.source(f0, source_phase, source_noise)
        samples = mel_lengths * self.frame_samples
        stft_frames = samples // self.hop + 1
        stft_mask = _positions(stft_frames, s.shape[1] // self.hop + 1)[:, None, :].to(torch.float32)
        s_stft = self.stft(s, samples) * stft_mask
        for rate in self.upsample_rates:
            size, lengths = size * rate, lengths * rate
            masks.append(_positions(lengths, size)[:, None, :].to(torch.float32))
        masks[-1] = stft_mask  # the last resolution gains one frame: the reflection pad on its left

        x = _conv(hift.conv_pre, mel, mask0)
        mask = mask0
        kernels = hift.num_kernels
        for i, up in enumerate(hift.ups):
            x = up(F.leaky_relu(x, hift.lrelu_slope) * mask)
            if i == len(hift.ups) - 1:
                x = hift.reflection_pad(x)
            mask = masks[i]
            si = _resblock(hift.source_resblocks[i], hift.source_downs[i](s_stft), mask)
            x = x + si
            xs = _resblock(hift.resblocks[i * kernels], x, mask)
            for j in range(1, kernels):
                xs = xs + _resblock(hift.resblocks[i * kernels + j], x, mask)
            x = xs / kernels
        x = hift.conv_post(F.leaky_relu(x) * mask)
        bins = self.n_fft // 2 + 1
        audio = self.istft(torch.exp(x[:, :bins]), torch.sin(x[:, bins:]), mask)
        audio = torch.clamp(audio, -hift.audio_limit, hift.audio_limit)
        return audio * _positions(samples, audio.shape[1]).to(torch.float32), frame_phase
