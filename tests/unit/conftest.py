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
