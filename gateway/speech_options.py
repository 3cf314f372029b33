"""A speech request's sampling options (schemas.SPEECH_OPTIONS: the body field that fills each Triton input): which
speech models take each (their configs' inputs), and the SpeechRequest made of them. Their ranges and defaults
are documented from the configs by schemas.Bodies.

An option a model does not take (`exaggeration` sent to orpheus) is refused with a 400 `unsupported_parameter`
naming the field, as OpenAI answers a parameter a model does not support; ignoring it would hand the client
audio unlike what it asked for, with no sign why. Options left unset (null) are never sent: a client that
sends only OpenAI's fields speaks with every model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tritone.client import SpeechRequest
from tritone.gateway.errors import APIError
from tritone.gateway.model_facts import ModelFacts
from tritone.gateway.schemas import SPEECH_OPTIONS as OPTIONS


def options(values: Mapping) -> dict:
    """The options of a body (or a speech job's stored parameters), unset ones None."""
    return {field: values.get(field) for field in OPTIONS}


def check_taken(model: str, facts: ModelFacts | None, values: Mapping, catalog_facts: Mapping[str, ModelFacts],
                speech_models: Iterable[str]) -> None:
    """400 `unsupported_parameter` for the first option set in `values` that `model` (its config's inputs) does not
    take, naming the other speech models (of `speech_models`, their facts known) that do."""
    if facts is None or not facts.inputs:  # not known: Triton refuses what it does not take
        return
    for field, tensor in OPTIONS.items():
        if values.get(field) is None or facts.takes(tensor):
            continue
        takers = [name for name in speech_models
                  if name != model and name in catalog_facts and catalog_facts[name].takes(tensor)]
        also = f"; it is {' and '.join(takers)}'s" if takers else ""
        raise APIError(400, f"{field}: {model} does not take this option{also}", param=field,
                       code="unsupported_parameter")


def speech_request(text: str, values: Mapping, max_duration: float | None, voice: Mapping) -> SpeechRequest:
    """The SpeechRequest of a body's (or job's) options and its voice's fields (voices.speech_fields)."""
    return SpeechRequest(text=text, max_duration=max_duration, **options(values), **voice)
