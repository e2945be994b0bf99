"""The envelope of a stored CRM secret (agency_crm.crypto): it round-trips, it is bound to its
client and column, any change to it is noticed, and no error ever shows a secret or a key.
The database side: the CHECK of migration 0014 accepts an envelope and refuses a plaintext."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import psycopg
import pytest

from agency_crm import crypto
from agency_crm.crypto import KeyRing, NoKeyError, SecretError
from tests.helpers.fixtures import Make, insert, raises_sqlstate

SECRET = "pd-live-7c1e0f-canary"
CLIENT = uuid.UUID("6f1c0e2a-0000-4000-8000-000000000001")
OTHER_CLIENT = uuid.UUID("6f1c0e2a-0000-4000-8000-000000000002")
COLUMNS = crypto.SECRET_COLUMNS["client_crm_configs"]


def entry(key_id: str, key: bytes) -> str:
    return f"{key_id}:{base64.b64encode(key).decode()}"


KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
RING = KeyRing.parse(f"{entry('a', KEY_A)}, {entry('b', KEY_B)}")


def key_material() -> list[str]:
    """Every form a key of RING could be shown in."""
    forms = []
    for key in (KEY_A, KEY_B):
        forms += [
            base64.b64encode(key).decode(),
            base64.urlsafe_b64encode(key).decode().rstrip("="),
            key.hex(),
        ]
    return forms


def assert_clean(exc: BaseException, *secrets: str) -> str:
    """The error's text (message and hint) holds neither a secret nor key material."""
    assert isinstance(exc, SecretError)
    shown = f"{exc} {exc.one_line()} {exc.hint or ''}"
    for secret in (*secrets, *key_material()):
        assert secret not in shown, f"{secret!r} shown in: {shown}"
    return shown


def sealed(plaintext: str = SECRET, column: str = "api_key", client: Any = CLIENT) -> str:
    return RING.encrypt(plaintext, client_id=client, column=column)


def replace_field(envelope: str, index: int, value: str) -> str:
    parts = envelope.split(":")
    parts[index] = value
    return ":".join(parts)


def flip(text: str, at: int) -> str:
    """``text`` with the base64url character at ``at`` changed (a character inside the text
    carries six bits of data; the last may carry only padding bits)."""
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("plaintext", [SECRET, "x", "ünïcødé-🔑", "a" * 4096, " spaced key "])
def test_a_secret_round_trips(column: str, plaintext: str) -> None:
    envelope = RING.encrypt(plaintext, client_id=CLIENT, column=column)
    assert envelope.startswith("acrm:v1:a:")
    assert crypto.is_envelope(envelope) and crypto.key_id_of(envelope) == "a"
    if len(plaintext) >= 4:  # a one-letter secret may well occur in base64 by chance
        assert plaintext not in envelope
    assert RING.decrypt(envelope, client_id=str(CLIENT), column=column) == plaintext
    # A fresh nonce every time: the same secret never gives the same envelope.
    assert RING.encrypt(plaintext, client_id=CLIENT, column=column) != envelope
    # Any key of the ring decrypts; only the first encrypts.
    later = KeyRing.parse(f"{entry('c', bytes(32))},{entry('a', KEY_A)}")
    assert later.decrypt(envelope, client_id=CLIENT, column=column) == plaintext
    assert later.needs_rotation(envelope) and not RING.needs_rotation(envelope)


def test_a_secret_copied_to_another_client_fails_to_decrypt() -> None:
    with pytest.raises(SecretError) as info:
        RING.decrypt(sealed(), client_id=OTHER_CLIENT, column="api_key")
    shown = assert_clean(info.value, SECRET)
    assert f"crm.client_crm_configs.api_key of client {OTHER_CLIENT}" in shown
    assert "fails to decrypt under key a" in shown
    assert "written for another client or column" in shown


def test_a_secret_copied_to_another_column_fails_to_decrypt() -> None:
    with pytest.raises(SecretError) as info:
        RING.decrypt(sealed(column="api_key"), client_id=CLIENT, column="oauth_access_token")
    shown = assert_clean(info.value, SECRET)
    assert "oauth_access_token" in shown and "fails to decrypt" in shown


@pytest.mark.parametrize(
    ("what", "tamper"),
    [
        ("nonce", lambda e: replace_field(e, 3, flip(e.split(":")[3], 7))),
        ("ciphertext", lambda e: replace_field(e, 4, flip(e.split(":")[4], 0))),
        ("tag", lambda e: replace_field(e, 4, flip(e.split(":")[4], -3))),
        ("truncated tag", lambda e: e[:-4]),
        ("key id", lambda e: replace_field(e, 2, "b")),
    ],
)
def test_a_tampered_envelope_fails_to_decrypt(what: str, tamper: Any) -> None:
    envelope = sealed()
    changed = tamper(envelope)
    assert changed != envelope and crypto.is_envelope(changed), what
    with pytest.raises(SecretError) as info:
        RING.decrypt(changed, client_id=CLIENT, column="api_key")
    shown = assert_clean(info.value, SECRET)
    assert "fails to decrypt" in shown and "it was changed" in shown


def test_an_unknown_key_id_says_which_key_is_missing_and_which_are_there() -> None:
    envelope = KeyRing.parse(entry("old", bytes(32))).encrypt(
        SECRET, client_id=CLIENT, column="api_key"
    )
    with pytest.raises(SecretError) as info:
        RING.decrypt(envelope, client_id=CLIENT, column="api_key")
    assert not isinstance(info.value, NoKeyError)
    shown = assert_clean(info.value, SECRET)
    assert "encrypted under key old, which AGENCY_CRM_SECRET_KEYS does not hold" in shown
    assert "(it holds a, b)" in shown
    assert "agency-crm secrets rotate" in (info.value.hint or "")


def test_without_a_key_ring_nothing_is_encrypted_or_decrypted() -> None:
    empty = KeyRing.from_environment({})
    assert empty.keys == ()
    with pytest.raises(NoKeyError) as info:
        empty.encrypt(SECRET, client_id=CLIENT, column="api_key")
    shown = assert_clean(info.value, SECRET)
    assert "no encryption key is configured" in shown and "AGENCY_CRM_SECRET_KEYS" in shown
    assert "agency-crm secrets generate-key" in shown
    with pytest.raises(NoKeyError) as info:
        empty.decrypt(sealed(), client_id=CLIENT, column="api_key")
    shown = assert_clean(info.value, SECRET)
    assert "encrypted under key a, and no key is configured" in shown


@pytest.mark.parametrize(
    "stored",
    [SECRET, "", "acrm:v1:a:short:x", "acrm:v2:a:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAA"],
)
def test_a_value_that_is_not_an_envelope_is_refused_without_quoting_it(stored: str) -> None:
    with pytest.raises(SecretError) as info:
        RING.decrypt(stored, client_id=CLIENT, column="api_key")
    shown = assert_clean(info.value, SECRET)
    assert "is not an encrypted value" in shown
    if stored:
        assert stored not in shown


def test_an_empty_secret_and_an_unknown_column_are_refused() -> None:
    with pytest.raises(SecretError, match="an empty value is not a secret"):
        RING.encrypt("", client_id=CLIENT, column="api_key")
    with pytest.raises(ValueError, match=r"crm\.client_crm_configs\.name is not a secret column"):
        RING.encrypt(SECRET, client_id=CLIENT, column="name")


GOOD = base64.b64encode(bytes(range(7, 39))).decode()
SHORT = base64.b64encode(bytes(range(16))).decode()
LONG = base64.b64encode(bytes(range(48))).decode()


@pytest.mark.parametrize(
    ("text", "message", "hidden"),
    [
        (f"k1{GOOD}", "entry 1 is not <key id>:<base64 key>", GOOD),
        (f"bad.id:{GOOD}", "entry 1 is not <key id>:<base64 key>", GOOD),
        (f"{'k' * 33}:{GOOD}", "entry 1 is not <key id>:<base64 key>", GOOD),
        (f"k1:{GOOD},k2:not*b64*{GOOD[:20]}", "the key of entry 2 (k2) is not the base64", "b64"),
        (f"k1:{SHORT}", "the key of entry 1 (k1) is not the base64 of 32 bytes", SHORT),
        (f"k1:{LONG}", "the key of entry 1 (k1) is not the base64 of 32 bytes", LONG),
        (f"k1:{GOOD} k1:{GOOD}", "key id k1 is given twice", GOOD),
    ],
)
def test_a_malformed_key_ring_is_refused_without_echoing_the_key(
    text: str, message: str, hidden: str
) -> None:
    with pytest.raises(SecretError) as info:
        KeyRing.parse(text)
    shown = f"{info.value} {info.value.one_line()}"
    assert shown.startswith("AGENCY_CRM_SECRET_KEYS: ") and message in shown
    assert "agency-crm secrets generate-key" in shown or "twice" in shown
    for fragment in (hidden, GOOD, GOOD[:20]):
        assert fragment not in shown


def test_a_key_ring_takes_commas_whitespace_and_base64url() -> None:
    urlsafe = base64.urlsafe_b64encode(KEY_B).decode().rstrip("=")
    ring = KeyRing.parse(f"\n  a:{base64.b64encode(KEY_A).decode()} ,\n\tb:{urlsafe}\n")
    assert ring.key_ids == ("a", "b") and ring.primary == "a"
    assert ring.decrypt(sealed(), client_id=CLIENT, column="api_key") == SECRET


def test_generated_entries_parse_into_a_ring_and_are_fresh() -> None:
    first, second = crypto.generate_entry("k2027-01"), crypto.generate_entry()
    ring = KeyRing.parse(f"{first},{second}")
    assert ring.key_ids[0] == "k2027-01" and crypto.KEY_ID.match(ring.key_ids[1])
    assert ring.keys[0][1] != ring.keys[1][1] and len(ring.keys[0][1]) == 32
    with pytest.raises(SecretError, match="key id 'no way' is not 1-32 letters"):
        crypto.generate_entry("no way")


# --- The CHECK of migration 0014 ------------------------------------------------------------


def test_the_check_accepts_an_envelope_and_refuses_a_plaintext(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    keys = KeyRing.from_environment()
    values = {"client_id": client["id"], "crm_type": "hubspot"}
    envelopes = {c: keys.encrypt(SECRET, client_id=client["id"], column=c) for c in COLUMNS}
    # The constraints alone, as a bulk load with triggers disabled would meet them (the
    # validate trigger refuses a plaintext first: tests/sql/test_refusals.py).
    db.execute("SET LOCAL session_replication_role = replica")
    row = insert(db, "client_crm_configs", values | envelopes)
    assert {c: row[c] for c in COLUMNS} == envelopes
    assert {c: keys.decrypt(row[c], client_id=client["id"], column=c) for c in COLUMNS} == {
        c: SECRET for c in COLUMNS
    }
    db.execute("UPDATE crm.client_crm_configs SET deleted_at = now() WHERE id = %s", (row["id"],))
    for column in COLUMNS:
        for plaintext in (SECRET, envelopes[column][:-30], "acrm:v1:test:" + SECRET):
            with raises_sqlstate(db, "23514") as info:
                insert(db, "client_crm_configs", values | {column: plaintext})
            assert info.value.diag.constraint_name == f"client_crm_configs_{column}_check"


CHECK_PATTERN = "^acrm:v1:[A-Za-z0-9_-]{1,32}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22,}$"


def test_python_and_the_check_agree_on_what_an_envelope_is(db: psycopg.Connection[Any]) -> None:
    envelope = sealed()
    samples = [
        envelope,
        sealed("x" * 300),
        replace_field(envelope, 2, "k" * 32),
        replace_field(envelope, 2, "k" * 33),
        replace_field(envelope, 1, "v2"),
        envelope[:-1] + "=",
        envelope + ":",
        " " + envelope,
        envelope.replace("acrm", "ACRM"),
        SECRET,
    ]
    [definition] = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conname = 'client_crm_configs_api_key_check'"
    ).fetchone() or [None]
    assert definition is not None and "~" in definition
    for sample in samples:
        [in_sql] = db.execute("SELECT %s::text ~ %s", (sample, CHECK_PATTERN)).fetchone() or [None]
        assert in_sql == crypto.is_envelope(sample), sample
    assert f"'{CHECK_PATTERN}'" in definition
