"""Sentence-level captions: each spoken sentence's text with its first and last sample.

The gateway speaks long text a sentence at a time, so it knows exactly where each sentence's audio
starts and ends: captions are sentence level (tritone has no forced aligner for word times). Times
come from sample counts, so consecutive captions touch and the last one ends at the audio's end.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("vtt", "srt", "json")
MEDIA_TYPES = {"vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8",
               "json": "application/json"}


@dataclass(frozen=True)
class Caption:
    text: str
    start_sample: int
    end_sample: int  # exclusive

    def to_dict(self, sample_rate: int) -> dict:
        return {"text": self.text, "start": self.start_sample / sample_rate, "end": self.end_sample / sample_rate,
                "start_sample": self.start_sample, "end_sample": self.end_sample}


class CaptionTrack:
    """Captions added sentence by sentence as their audio is known (samples at `sample_rate`)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.captions: list[Caption] = []

    @property
    def samples(self) -> int:
        return self.captions[-1].end_sample if self.captions else 0

    def add(self, text: str, samples: int) -> Caption:
        caption = Caption(" ".join(text.split()), self.samples, self.samples + samples)
        self.captions.append(caption)
        return caption

    def to_dict(self) -> dict:
        return {"object": "captions", "level": "sentence", "sample_rate": self.sample_rate,
                "duration": self.samples / self.sample_rate,
                "captions": [caption.to_dict(self.sample_rate) for caption in self.captions]}

    @classmethod
    def from_dict(cls, data: dict) -> "CaptionTrack":
        track = cls(int(data["sample_rate"]))
        track.captions = [Caption(c["text"], int(c["start_sample"]), int(c["end_sample"])) for c in data["captions"]]
        return track

    def render(self, fmt: str) -> str:
        if fmt == "vtt":
            cues = [f"{i}\n{_stamp(c.start_sample, self.sample_rate, '.')} --> "
                    f"{_stamp(c.end_sample, self.sample_rate, '.')}\n{c.text}\n"
                    for i, c in enumerate(self.captions, start=1)]
            return "WEBVTT\n\n" + "\n".join(cues)
        if fmt == "srt":
            return "\n".join(f"{i}\n{_stamp(c.start_sample, self.sample_rate, ',')} --> "
                             f"{_stamp(c.end_sample, self.sample_rate, ',')}\n{c.text}\n"
                             for i, c in enumerate(self.captions, start=1))
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def _stamp(sample: int, sample_rate: int, separator: str) -> str:
    """HH:MM:SS.mmm (VTT) or HH:MM:SS,mmm (SRT), rounded to the millisecond."""
    millis = round(sample * 1000 / sample_rate)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


class StreamCaptions:
    """A speech stream's captions as it plays: a sentence's caption is ready once its last chunk has passed.

    `follow(chunks)` passes each chunk's audio on and notes which sentence it speaks; `take()` returns the
    captions completed since the last call. With `speed` the audio is stretched after this point, so
    sample positions are scaled by 1/speed (exact at speed 1).
    """

    def __init__(self, sample_rate: int, whole_text: str, speed: float = 1.0):
        self.track = CaptionTrack(sample_rate)
        self._whole_text, self._speed = whole_text, speed
        self._sentence: tuple[int, str] | None = None
        self._samples = 0  # of the open sentence, before stretching
        self._spoken = 0  # samples of the closed sentences, before stretching
        self._ready: list[Caption] = []

    async def follow(self, chunks):
        async for chunk in chunks:
            sentence = (chunk.sentence, chunk.sentence_text or self._whole_text)
            if self._sentence is not None and sentence[0] != self._sentence[0]:
                self._close()
            self._sentence = sentence
            self._samples += len(chunk.audio)
            yield chunk.audio
        if self._sentence is not None:
            self._close()

    def _close(self) -> None:
        start = round(self._spoken / self._speed)
        self._spoken += self._samples
        self._samples = 0
        self._ready.append(self.track.add(self._sentence[1], round(self._spoken / self._speed) - start))

    def take(self) -> list[dict]:
        ready, self._ready = self._ready, []
        return [caption.to_dict(self.track.sample_rate) for caption in ready]
