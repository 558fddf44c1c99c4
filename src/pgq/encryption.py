"""Encrypted args and results: ``@app.task(encrypt=True)``.

A job of such a task stores its args (and its result) as an envelope, a JSON
object that PostgreSQL, the dashboard and SQL see as it is::

    {"$pgq_encrypted": 1, "key": "3f2a9c1e", "nonce": "...", "data": "..."}

``data`` is the AES-256-GCM encryption of the JSON (with its authentication
tag), under the key whose id is ``key`` (the first 8 hex digits of the key's
SHA-256). Keys come from ``PGQ_ENCRYPTION_KEYS``: comma-separated base64
encodings of 32-byte keys; the first encrypts, all of them decrypt, so a new
key goes first and the old ones stay until ``pgq keys rotate`` re-encrypted the
live jobs. The handler sees plain args; a job whose envelope no key opens fails
for good with an error that says which key it needs, and the worker goes on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

import orjson

from pgq.errors import ConfigurationError, PgqError

#: The marker of an envelope.
MARK = "$pgq_encrypted"
#: Bound into every envelope: a ciphertext made for something else does not open as pgq's.
AAD = b"pgq v1"
#: What the dashboard, the API and the CLI show instead of an envelope.
SHOWN = "<encrypted>"


class DecryptionError(PgqError):
    """An envelope that no key of PGQ_ENCRYPTION_KEYS opens."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def parse_keys(text: str | None) -> list[bytes]:
    """The keys of ``PGQ_ENCRYPTION_KEYS``, in order; ConfigurationError names a bad one."""
    keys: list[bytes] = []
    for index, part in enumerate((text or "").split(",")):
        part = part.strip()
        if not part:
            continue
        try:
            key = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigurationError(
                f"PGQ_ENCRYPTION_KEYS: key {index + 1} is not the base64 of 32 bytes; make one with "
                'python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'
            )
        keys.append(key)
    return keys


def is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get(MARK) == 1


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ConfigurationError(
            "encrypt=True needs the cryptography package: pip install 'pgq-jobs[encryption]'"
        ) from None
    return AESGCM(key)


def seal(plain_json: bytes, keys: list[bytes], task: str) -> bytes:
    """The envelope (as JSON) of ``plain_json``, under the first key."""
    if not keys:
        raise ConfigurationError(
            f"task {task!r} has encrypt=True but PGQ_ENCRYPTION_KEYS is not set: set it to the base64 of a "
            "32-byte key (comma-separated keys: the first encrypts, all decrypt)"
        )
    nonce = os.urandom(12)
    data = _aesgcm(keys[0]).encrypt(nonce, plain_json, AAD)
    return orjson.dumps(
        {
            MARK: 1,
            "key": key_id(keys[0]),
            "nonce": base64.b64encode(nonce).decode(),
            "data": base64.b64encode(data).decode(),
        }
    )


def open_envelope(envelope: dict[str, Any], keys: list[bytes]) -> Any:
    """The JSON value inside ``envelope``; :class:`DecryptionError` says which key it needs."""
    wanted = envelope.get("key")
    key = next((k for k in keys if key_id(k) == wanted), None)
    if key is None:
        known = ", ".join(key_id(k) for k in keys) or "none: PGQ_ENCRYPTION_KEYS is not set"
        raise DecryptionError(
            f"encrypted with key {wanted!r}, which PGQ_ENCRYPTION_KEYS does not hold (it holds {known}); "
            "add that key back (after the current one) to read it"
        )
    try:
        nonce = base64.b64decode(envelope["nonce"], validate=True)
        data = base64.b64decode(envelope["data"], validate=True)
        plain = _aesgcm(key).decrypt(nonce, data, AAD)
        return orjson.loads(plain)
    except ConfigurationError:
        raise
    except Exception as exc:  # InvalidTag, a broken envelope
        raise DecryptionError(
            f"the envelope does not open with key {wanted!r}: it was changed or is not pgq's ({type(exc).__name__})"
        ) from None


#: Jobs re-sealed per statement by :func:`rotate`.
ROTATE_BATCH = 500


def rotate(app: Any) -> dict[str, int]:
    """Re-encrypt with the first key of PGQ_ENCRYPTION_KEYS the args of live jobs and of
    schedules sealed with another key (``pgq keys rotate``). Finished jobs keep theirs:
    keep the old key (after the new one) while history holds them. Returns the counts
    ``jobs``, ``schedules`` and ``unreadable`` (envelopes no key opens, left as they are)."""
    from pgq.db import store

    keys: list[bytes] = app.encryption_keys
    if not keys:
        raise ConfigurationError("PGQ_ENCRYPTION_KEYS is not set: put the new key first, the old ones after it")
    current = key_id(keys[0])
    counts = {"jobs": 0, "schedules": 0, "unreadable": 0}

    def resealed(args: dict[str, Any]) -> str | None:
        try:
            plain = open_envelope(args, keys)
        except DecryptionError:
            counts["unreadable"] += 1
            return None
        return seal(orjson.dumps(plain), keys, "rotation").decode()

    after = 0
    while True:
        rows = store.keys_stale_jobs.run(app.db, {"current": current, "after": after, "batch": ROTATE_BATCH})
        if not rows:
            break
        after = rows[-1]["id"]
        batch = [(row["id"], row["args"], new) for row in rows if (new := resealed(row["args"])) is not None]
        if batch:
            params: store.KeysResealJobs = {
                "id": [job_id for job_id, _, _ in batch],
                "old": [orjson.dumps(old).decode() for _, old, _ in batch],
                "new": [new for _, _, new in batch],
            }
            counts["jobs"] += len(store.keys_reseal_jobs.run(app.db, params))
    for row in store.keys_stale_schedules.run(app.db, {"current": current}):
        new = resealed(row["args"])
        if new is not None:
            change: store.KeysResealSchedule = {
                "name": row["name"],
                "old": orjson.dumps(row["args"]).decode(),
                "new": new,
            }
            counts["schedules"] += len(store.keys_reseal_schedule.run(app.db, change))
    return counts
