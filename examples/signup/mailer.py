"""The email provider's client. Its API key comes from the environment only (MAIL_API_KEY);
without MAIL_API_URL it is a fake that prints the mail, so the example runs offline."""

from __future__ import annotations

import logging
import os
from collections import Counter

import httpx

log = logging.getLogger("signup.mailer")


class InvalidAddress(Exception):
    """The provider refused the address (4xx): retrying cannot help."""


class MailerUnavailable(Exception):
    """Network error or 5xx: worth retrying later."""


#: Fake provider: how many times each address was tried in this process.
_tries: Counter[str] = Counter()


def send_mail(to: str, subject: str, body: str) -> str:
    url = os.environ.get("MAIL_API_URL")
    if not url:
        return _fake_send(to, subject)
    try:
        response = httpx.post(
            url,
            json={"to": to, "subject": subject, "text": body},
            headers={"Authorization": f"Bearer {os.environ['MAIL_API_KEY']}"},
            timeout=10,
        )
    except httpx.TransportError as exc:  # DNS, refused, reset, timeout
        raise MailerUnavailable(f"mail provider unreachable: {exc}") from exc
    if response.status_code >= 500:
        raise MailerUnavailable(f"mail provider answered {response.status_code}")
    if response.status_code in (400, 422):
        raise InvalidAddress(f"{to}: {response.text[:200]}")
    response.raise_for_status()
    return str(response.json()["id"])


def _fake_send(to: str, subject: str) -> str:
    _tries[to] += 1
    if to.endswith(".invalid"):
        raise InvalidAddress(f"{to}: no such domain")
    if "+flaky" in to and _tries[to] == 1:  # the first try of such an address meets a 503
        raise MailerUnavailable("mail provider answered 503")
    log.info("fake mail to %s: %s", to, subject)
    return f"fake-{to}-{_tries[to]}"
