"""Planning one language-model step: which requests feed how many tokens, under a token budget.

A request with a prompt (`Slot.prompt_length` > 0) feeds it in chunks, in the same LM call as
the single-token decode steps of the other requests: the step is [batch rows, width], width 1
when nobody prefills. Each request feeds its tokens from its own position (`Slot.cached`); a
decoding request feeds one token and never waits more than one step for a prefilling one. A
request whose prompt prefix came from the prefix cache starts past it (`cached` > 0 at admission),
and one waiting for another request's prefill of its prefix is not planned until that is stored.

While someone prefills, every row is padded to the width, so a step computes rows x width
tokens. `step_tokens` bounds that: width = min(prefill_chunk, step_tokens // rows), at least 1,
and no wider than the longest prompt left. Where decoding is memory-bound (a GPU) padding is
nearly free and the budget is large; on a CPU, compute-bound, a small budget keeps a prefill
step within a few decode steps' time, at the cost of more (cheaper) steps for the prompt.

The engine plans; a family reads the plan (`StepPlan.feeds`) to build the step's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepBudget:
    prefill_chunk: int = 32  # most prompt tokens a request feeds in one step
    step_tokens: int = 4096  # most tokens (rows x width, padding included) in a step while someone prefills

    def __post_init__(self):
        for name in ("prefill_chunk", "step_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def width(self, slots) -> int:
        """Tokens per row of the step that runs `slots` (each exposes rows, cached, prompt_length)."""
        left = [slot.prompt_length - slot.cached for slot in slots if slot.prefilling]
        if not left:
            return 1
        rows = sum(slot.rows for slot in slots)
        return min(self.prefill_chunk, max(1, self.step_tokens // rows), max(left))


@dataclass(frozen=True)
class Feed:
    """What one request feeds this step: prompt tokens [start, end) (prefill), or one token at `start`
    (decode: the token the family sampled last). Its rows are `rows` of the batch and of the KV cache."""

    slot: object
    rows: slice
    start: int  # the request's position: its KV entries so far
    count: int  # tokens fed (<= the step's width); the rest of the row is padding
    prefill: bool

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass(frozen=True)
class StepPlan:
    width: int  # tokens per row in the LM call
    batch_rows: int  # rows in the LM call (a request may take more than one)
    feeds: list[Feed]  # one per request, in batch order
    past_keys: object  # the batch's KV cache [L, batch_rows, H, T, Dh], updated in place by the engine
    past_values: object

    @property
    def prefill_tokens(self) -> int:
        return sum(feed.count for feed in self.feeds if feed.prefill)


def plan_step(slots, budget: StepBudget, cache) -> StepPlan:
    """The plan for one step over `slots`, with the cache prepared to take `width` new entries per row."""
    width = budget.width(slots)
    past_keys, past_values = cache.prepare(slots, width)
    feeds = []
    for slot in slots:
        count = min(width, slot.prompt_length - slot.cached) if slot.prefilling else 1
        feeds.append(Feed(slot, cache.rows(slot), slot.cached, count, slot.prefilling))
    return StepPlan(width, sum(slot.rows for slot in slots), feeds, past_keys, past_values)
