"""One model's facts as its Triton config states them (parameters written by its family spec, output shapes),
and what a speech model's facts and the gateway's settings make of them together."""

from __future__ import annotations

from dataclasses import dataclass, field

from tritone.gateway.settings import SpeechModel


@dataclass(frozen=True)
class ModelFacts:
    """One model's config as Triton serves it."""

    name: str
    version: str
    parameters: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)  # output tensor -> dims (-1: variable)

    @classmethod
    def from_config(cls, name: str, version: str, config: dict) -> "ModelFacts":
        """From Triton's model config as JSON (tritonclient's get_model_config(as_json=True)["config"])."""
        parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        outputs = {output["name"]: tuple(int(dim) for dim in output.get("dims", ()))
                   for output in config.get("output", ())}
        return cls(name, version, parameters, outputs)

    def number(self, key: str) -> float | None:
        return float(self.parameters[key]) if self.parameters.get(key) else None

    def integer(self, key: str) -> int | None:
        return int(self.parameters[key]) if self.parameters.get(key) else None

    def words(self, key: str) -> tuple[str, ...]:
        """A comma-separated parameter's entries."""
        return tuple(word.strip() for word in self.parameters.get(key, "").split(",") if word.strip())


def speakers(model: SpeechModel, facts: ModelFacts | None) -> tuple[str, ...]:
    """A speech model's built-in speakers: the gateway's list if it sets one, else the model's own."""
    if model.voices is not None:
        return tuple(model.voices)
    return facts.words("speakers") if facts is not None else ()


def default_voice(model: SpeechModel, facts: ModelFacts | None) -> str | None:
    if model.default_voice is not None:
        return model.default_voice
    return next(iter(speakers(model, facts)), None)
