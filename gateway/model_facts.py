"""One model's facts as its Triton config states them (parameters written by its family spec, output shapes),
and what a speech model's facts and the gateway's settings make of them together."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tritone.gateway.settings import SpeechModel

_RANGE = re.compile(r"in ([\[(])(-?\d+(?:\.\d+)?), (-?\d+(?:\.\d+)?)([\])])")  # "in [0, 2]", "in (0, 1]"


@dataclass(frozen=True)
class ModelFacts:
    """One model's config as Triton serves it."""

    name: str
    version: str
    parameters: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)  # output tensor -> dims (-1: variable)
    inputs: tuple[str, ...] = ()  # its input tensors' names: what a request to it may send

    @classmethod
    def from_config(cls, name: str, version: str, config: dict) -> "ModelFacts":
        """From Triton's model config as JSON (tritonclient's get_model_config(as_json=True)["config"])."""
        parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        outputs = {output["name"]: tuple(int(dim) for dim in output.get("dims", ()))
                   for output in config.get("output", ())}
        return cls(name, version, parameters, outputs, tuple(tensor["name"] for tensor in config.get("input", ())))

    def number(self, key: str) -> float | None:
        return float(self.parameters[key]) if self.parameters.get(key) else None

    def integer(self, key: str) -> int | None:
        return int(self.parameters[key]) if self.parameters.get(key) else None

    def takes(self, tensor: str) -> bool:
        return tensor in self.inputs

    def doc(self, tensor: str) -> str | None:
        """What the config says of an input (its family spec's `doc`: range, default), config parameter input.<name>."""
        return self.parameters.get(f"input.{tensor}") or None

    def bounds(self, tensor: str) -> dict[str, float] | None:
        """The range an input's doc states ("in [0, 2]; default 0.5" -> ge 0, le 2), as pydantic Field arguments."""
        found = _RANGE.search(self.doc(tensor) or "")
        if found is None:
            return None
        opening, low, high, closing = found.groups()
        return {"gt" if opening == "(" else "ge": float(low), "lt" if closing == ")" else "le": float(high)}

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
