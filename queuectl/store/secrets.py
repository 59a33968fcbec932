"""Passwords in queue locations: hidden when shown, scrubbed from errors, left out for jobs.

A PostgreSQL queue is named by a URL (``postgresql://user:PASSWORD@host/db``, or
``?password=PASSWORD``) or by a libpq ``key=value`` string (``host=db password=PASSWORD``).
Whatever form the password takes, and also when the location cannot be parsed at all, nothing
here lets it reach the user's screen, a log, or a job's environment.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# Up to the last "@": a password may hold an unescaped "@" (or "/"); hiding too much is safe.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/?#@]*:)(?P<pw>.*)(?P<tail>@)", re.I)
# ``password=`` in a URL's query, or in a key=value string, quoted ('a b', with \' inside) or not
_PASSWORD_PARAM = re.compile(
    r"(?P<head>(?:^|[?&\s])password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'?|[^&#\s]*)", re.I
)
#: the keywords a libpq connection string starts with (see libpq's "Parameter Key Words")
_CONNINFO_START = re.compile(
    r"\s*(host|hostaddr|port|dbname|user|password|passfile|service|sslmode|connect_timeout|"
    r"options|application_name|target_session_attrs|channel_binding|sslrootcert)\s*=",
    re.I,
)
#: a password this short would blank out letters everywhere: drop the whole message instead
MIN_SCRUB = 4


def is_conninfo(target: str) -> bool:
    """Whether ``target`` is a libpq ``key=value`` connection string (not a file name)."""
    return "://" not in target and _CONNINFO_START.match(target) is not None


def redact(target: str) -> str:
    """The location with any password replaced by ``***``, safe to print."""
    target = _URL_PASSWORD.sub(r"\g<head>***\g<tail>", target)
    return _PASSWORD_PARAM.sub(r"\g<head>***", target)


def passwords_in(target: str) -> set[str]:
    """Every form in which ``target``'s password could appear in a message (raw, decoded,
    unquoted); empty when it has none."""
    found: set[str] = set()
    for pattern in (_URL_PASSWORD, _PASSWORD_PARAM):
        for match in pattern.finditer(target):
            raw = match.group("pw")
            found |= {raw, unquote(raw), raw.strip("'"), raw.strip("'").replace("\\'", "'")}
    return {p for p in found if p}


def scrub(message: str, target: str, fallback: str) -> str:
    """``message`` (from libpq or psycopg, about ``target``) without any form of its password.

    Parsers quote what they could not read, which may be the password itself; a password too
    short to blank out safely gives ``fallback`` instead of the message.
    """
    message = message.replace(target, redact(target))
    for password in sorted(passwords_in(target), key=len, reverse=True):
        if password in message:
            if len(password) < MIN_SCRUB:
                return fallback
            message = message.replace(password, "***")
    return message


def without_password(target: str) -> str:
    """The location with its password left out (not masked): still usable by a program that
    finds the password elsewhere (``~/.pgpass``, ``PGPASSWORD``)."""
    target = _URL_PASSWORD.sub(lambda m: m.group("head")[:-1] + m.group("tail"), target)
    target = _PASSWORD_PARAM.sub(lambda m: m.group("head")[:1].strip("p"), target)
    return target.replace("?&", "?").replace("&&", "&").rstrip("?&").strip()
