"""What the gateway knows of the models it serves, read from Triton: each model's config parameters (its
limits and facts: sample rate, max duration, text length, speakers, voice clip lengths), written once in
its family's spec and rendered into its config, and its loaded version.

Read at start and again whenever the gateway loads a model; the request schemas (gateway/schemas.py)
are built from them, so a limit changed in a spec changes the API's validation and /docs. A model
that is not loaded has no facts yet: its schemas leave those limits to Triton until it is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from tritone.gateway.errors import APIError, unavailable
from tritone.gateway.model_facts import ModelFacts
from tritone.gateway.settings import Settings

log = logging.getLogger("tritone.gateway")


class ModelCatalog:
    """Facts of the configured models (the music model, the speech models and their codec encoders)."""

    def __init__(self, triton, settings: Settings):
        self.triton, self.settings = triton, settings
        self.facts: dict[str, ModelFacts] = {}
        self.on_change: Callable[[], None] = lambda: None  # told when a model's facts are new or changed
        self.ensure_ready: Callable[[str], Awaitable[None]] | None = None  # loads a model on demand

    @property
    def names(self) -> tuple[str, ...]:
        speech = self.settings.speech_models
        return (self.settings.music_model, *speech, *(model.codec_encoder for model in speech.values()))

    async def refresh(self, names: Iterable[str] | None = None) -> None:
        """Read the config of each of `names` (default: every configured model) that Triton has loaded."""
        try:
            loaded = {model.name: model for model in await self.triton.models() if model.state == "READY"}
        except APIError as error:
            log.warning("model limits not read: %s", error.message)
            return
        changed = False
        for name in dict.fromkeys(names or self.names):
            if name not in loaded:
                continue
            try:
                facts = ModelFacts.from_config(name, loaded[name].version, await self.triton.config(name))
            except APIError as error:
                log.warning("the config of %s was not read: %s", name, error.message)
                continue
            if self.facts.get(name) != facts:
                self.facts[name] = facts
                changed = True
        if changed:
            self.on_change()

    async def find(self, name: str) -> ModelFacts | None:
        """`name`'s facts, read now if they are not known yet; None if Triton cannot say (never an error)."""
        if name not in self.facts:
            await self.refresh((name,))
        return self.facts.get(name)

    async def get(self, name: str) -> ModelFacts:
        """`name`'s facts, read now (loading it on demand) if they are not known yet; 503 if Triton cannot say."""
        if name not in self.facts:
            if self.ensure_ready is not None:
                await self.ensure_ready(name)
            await self.refresh((name,))
        if name not in self.facts:
            raise unavailable(f"{name} is not loaded in Triton (or Triton is not reachable): its limits are unknown",
                              "model_unavailable")
        return self.facts[name]
