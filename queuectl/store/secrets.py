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


def is_conninfo(location: str) -> bool:
    """Whether ``location`` is a libpq ``key=value`` connection string (not a file name)."""
    return "://" not in location and _CONNINFO_START.match(location) is not None


def redact(location: str) -> str:
    """The location with any password replaced by ``***``, safe to print."""
    location = _URL_PASSWORD.sub(r"\g<head>***\g<tail>", location)
    return _PASSWORD_PARAM.sub(r"\g<head>***", location)


def passwords_in(location: str) -> set[str]:
    """Every form in which ``location``'s password could appear in a message (raw, decoded,
    unquoted); empty when it has none."""
    found: set[str] = set()
    for pattern in (_URL_PASSWORD, _PASSWORD_PARAM):
        for match in pattern.finditer(location):
            raw = match.group("pw")
            found |= {raw, unquote(raw), raw.strip("'"), raw.strip("'").replace("\\'", "'")}
    return {p for p in found if p}


def scrub(message: str, location: str, fallback: str) -> str:
    """``message`` (from libpq or psycopg, about ``location``) without any form of its password.

    Parsers quote what they could not read, which may be the password itself; a password too
    short to blank out safely gives ``fallback`` instead of the message.
    """
    message = message.replace(location, redact(location))
    for password in sorted(passwords_in(location), key=len, reverse=True):
        if password in message:
            if len(password) < MIN_SCRUB:
                return fallback
            message = message.replace(password, "***")
    return message


def without_password(location: str) -> str:
    """The location with its password left out (not masked): still usable by a program that
    finds the password elsewhere (``~/.pgpass``, ``PGPASSWORD``)."""
    location = _URL_PASSWORD.sub(lambda m: m.group("head")[:-1] + m.group("tail"), location)
    location = _PASSWORD_PARAM.sub(lambda m: m.group("head")[:1].strip("p"), location)
    return location.replace("?&", "?").replace("&&", "&").rstrip("?&").strip()
