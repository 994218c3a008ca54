"""E-mails rendered from templates in the member's language and sent over SMTP.

A template is `templates/email/<name>.<language>.txt`: its first line is the subject, the rest
the plain-text body. Undefined variables fail loudly, so a context missing a field is caught by
the tests instead of mailing a blank to a member.
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass, field
from datetime import date, timedelta
from email.message import EmailMessage
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from membership.settings import Settings

LANGUAGES = ("en", "nl")
TEMPLATES = ("welcome", "renewed", "payment_failed", "expired", "reminder", "magic_link")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "image"
    subtype: str = "png"


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    body: str
    attachments: list[Attachment] = field(default_factory=list)


def _money(value: dict[str, Any]) -> str:
    amount = int(value["amount_minor"])
    return f"{value['currency']} {amount // 100},{amount % 100:02d}"


def _day(value: str) -> str:
    return date.fromisoformat(value).strftime("%d-%m-%Y")


def _last_day(value: str) -> str:
    """Terms end before `ends_on`; members are told the last day they may visit."""
    return (date.fromisoformat(value) - timedelta(days=1)).strftime("%d-%m-%Y")


def _percent(basis_points: int) -> str:
    whole, rest = divmod(int(basis_points), 100)
    return f"{whole}%" if rest == 0 else f"{whole},{rest:02d}%"


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("membership", "templates/email"),
        undefined=StrictUndefined,
        autoescape=False,  # plain-text mail: there is no markup to escape
        keep_trailing_newline=True,
    )
    environment.filters.update(money=_money, day=_day, last_day=_last_day, percent=_percent)
    return environment


_ENVIRONMENT = _environment()


def render(template: str, *, language: str, context: dict[str, Any]) -> tuple[str, str]:
    """Subject and body; an unknown language falls back to English."""
    language = language if language in LANGUAGES else "en"
    text = _ENVIRONMENT.get_template(f"{template}.{language}.txt").render(**context)
    subject, _, body = text.partition("\n")
    return subject.strip(), body.lstrip("\n")


def _send_sync(settings: Settings, message: Message) -> None:
    email = EmailMessage()
    email["From"] = settings.mail_from
    email["To"] = message.to
    email["Subject"] = message.subject
    email.set_content(message.body)
    for attachment in message.attachments:
        email.add_attachment(
            attachment.content,
            maintype=attachment.maintype,
            subtype=attachment.subtype,
            filename=attachment.filename,
        )
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(email)


async def send(settings: Settings, message: Message) -> None:
    """Blocking smtplib in a thread: the job runner's event loop keeps serving other work."""
    await asyncio.to_thread(_send_sync, settings, message)
