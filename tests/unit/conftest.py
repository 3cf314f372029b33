"""Shared fixtures for the unit tests."""

import pytest


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory):
    """A model repository exported from the tiny-random MusicGen (about 5 s, once per session)."""
    from tritone.export.musicgen.export import export_musicgen

    repository = tmp_path_factory.mktemp("repo")
    export_musicgen("tiny-random", repository)
    return repository


@pytest.fixture(scope="session")
def orpheus_repository(tmp_path_factory):
    """A model repository exported from the tiny-random Orpheus + SNAC (about 5 s, once per session)."""
    from tritone.export.orpheus.export import export_orpheus

    repository = tmp_path_factory.mktemp("speech-repo")
    export_orpheus("tiny-random", repository)
    return repository


@pytest.fixture(scope="session")
def chatterbox_tiny_checkpoint(tmp_path_factory):
    """A tiny random Chatterbox checkpoint in the released layout, with its built-in voice (about 10 s, once per session)."""
    from tritone.export.chatterbox.tiny import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("chatterbox-tiny"), "tiny", seed=0)
