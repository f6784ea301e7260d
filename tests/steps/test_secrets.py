"""Credentials at rest: sealed with CONVEYOR_SECRET_KEY, opened only with the same key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.exceptions import ConfigError, ConveyorError
from conveyor.secrets import SecretBox, SecretError

SECRET = "hunter2-Bearer-abc"
SAME_KEY = "set the same CONVEYOR_SECRET_KEY on the API and the workers"


@given(st.text())
def test_a_sealed_secret_opens_to_the_same_text(text: str) -> None:
    box = SecretBox("a long random key")
    sealed = box.seal(text)
    assert sealed.startswith("enc:v1:")
    assert box.open(sealed) == text
    # Another box with the same key (the worker, not the API) opens it too.
    assert SecretBox("a long random key").open(sealed) == text


def test_sealing_encrypts_and_never_repeats() -> None:
    box = SecretBox("k")
    first, second = box.seal(SECRET), box.seal(SECRET)
    assert SECRET not in first
    assert first != second
    assert box.encrypts


def test_without_a_key_secrets_are_stored_marked_plain() -> None:
    box = SecretBox(None)
    assert not box.encrypts
    assert box.seal(SECRET) == f"plain:{SECRET}"
    assert box.open(f"plain:{SECRET}") == SECRET
    # Stored before a key was set: still readable once it is.
    assert SecretBox("k").open(f"plain:{SECRET}") == SECRET


def test_an_encrypted_secret_needs_the_same_key() -> None:
    sealed = SecretBox("key on the API").seal(SECRET)
    for box in (SecretBox(None), SecretBox("key on the worker")):
        with pytest.raises(SecretError, match=SAME_KEY):
            box.open(sealed)


@pytest.mark.parametrize(
    "stored",
    ["enc:v1:not-a-token", "enc:v1:gAAAAAé", "enc:v2:whatever", "hunter2", ""],
)
def test_damaged_or_unknown_forms_are_errors_that_hold_no_secret(stored: str) -> None:
    with pytest.raises(SecretError) as caught:
        SecretBox("k").open(stored)
    assert isinstance(caught.value, ConveyorError)
    assert isinstance(caught.value, ValueError)
    if stored:
        assert stored not in str(caught.value)


def test_a_tampered_token_is_refused() -> None:
    box = SecretBox("k")
    sealed = box.seal(SECRET)
    flipped = sealed[:-5] + ("A" if sealed[-5] != "A" else "B") + sealed[-4:]
    with pytest.raises(SecretError, match="cannot be decrypted"):
        box.open(flipped)


def test_from_env_reads_the_key_and_unset_or_empty_means_plain() -> None:
    sealed = SecretBox("shared").seal(SECRET)
    assert SecretBox.from_env({"CONVEYOR_SECRET_KEY": "shared"}).open(sealed) == SECRET
    assert not SecretBox.from_env({}).encrypts
    assert not SecretBox.from_env({"CONVEYOR_SECRET_KEY": ""}).encrypts


def test_an_empty_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        SecretBox("")
    assert caught.value.field == "CONVEYOR_SECRET_KEY"


def test_neither_key_nor_secret_shows_in_repr() -> None:
    box = SecretBox("my-very-secret-key")
    assert repr(box) == "SecretBox(encrypts=True)"
    assert "my-very-secret-key" not in repr(vars(box))
