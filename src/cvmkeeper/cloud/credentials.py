"""Finding the Tencent Cloud key pair, without ever letting the secret key show.

Sources, tried in this order (the first complete one wins):

1. Explicit config: ``secret_id`` plus ``secret_key_file`` (a file holding only the key).
   A plain ``secret_key`` in a config file is refused: config files get copied, diffed and
   pasted into tickets.
2. ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``): the files ``secret_id`` and
   ``secret_key``, and optionally ``token`` for temporary credentials, e.g.
   ``LoadCredential=secret_id:/etc/cvmkeeper/secret_id`` and
   ``LoadCredential=secret_key:/etc/cvmkeeper/secret_key``.
3. The SDK's default chain: the environment (``TENCENTCLOUD_SECRET_ID`` /
   ``TENCENTCLOUD_SECRET_KEY``), the INI files ``~/.tencentcloud/credentials`` then
   ``/etc/tencentcloud/credentials`` (section ``[default]``, keys ``secret_id`` /
   ``secret_key``), then the CVM role of the machine through the metadata service.

When none yields a key pair, :class:`CredentialsNotFoundError` names every place looked at
(instead of the SDK's ``OSError("TKE_REGION not exist")`` from its last, TKE-only step).

:class:`Credentials` hides its key and token from ``repr``/``str``. It offers
``get_credential_info()``, the one method the SDK signs requests with, so it is passed to
the SDK as is.
"""

from __future__ import annotations

import configparser
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cvmkeeper.files import warn_if_shared
from cvmkeeper.logs import register_secret

CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
SECRET_ID_FILE = "secret_id"  # noqa: S105 - a name, not a secret
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a name, not a secret
TOKEN_FILE = "token"  # noqa: S105 - a name, not a secret
ENV_SECRET_ID = "TENCENTCLOUD_SECRET_ID"  # noqa: S105 - a name, not a secret
ENV_SECRET_KEY = "TENCENTCLOUD_SECRET_KEY"  # noqa: S105 - a name, not a secret
ENV_TOKEN = "TENCENTCLOUD_SESSION_TOKEN"  # noqa: S105 - a name, not a secret
USER_PROFILE_FILE = "~/.tencentcloud/credentials"
SYSTEM_PROFILE_FILE = "/etc/tencentcloud/credentials"
METADATA_ROLE_URL = "http://metadata.tencentyun.com/latest/meta-data/cam/security-credentials/"


class CredentialsError(Exception):
    """Credentials could not be used as configured (the message never holds a secret)."""


class CredentialsNotFoundError(CredentialsError):
    """No source yielded a key pair; ``.looked_at`` lists every place tried, in order."""

    def __init__(self, looked_at: list[str]) -> None:
        self.looked_at = looked_at
        lines = "\n".join(f"  - {place}" for place in looked_at)
        super().__init__(f"no Tencent Cloud credentials found; looked at, in order:\n{lines}")


class CredentialProvider(Protocol):
    """Anything the SDK can sign with: it asks for (secret_id, secret_key, token) per request."""

    @property
    def secret_id(self) -> str:
        """The SecretId (not secret; it appears in every request)."""
        ...

    @property
    def source(self) -> str:
        """Where the credentials came from, for logs (never the key)."""
        ...

    def get_credential_info(self) -> tuple[str, str, str | None]:
        """(secret_id, secret_key, token) as of now; the SDK calls this for every request."""
        ...


@dataclass(frozen=True, slots=True)
class Credentials:
    """A static key pair (and optional token). ``repr`` and ``str`` never show key or token."""

    secret_id: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    source: str = "explicit"

    def __post_init__(self) -> None:
        if not self.secret_id or self.secret_id.strip() != self.secret_id:
            raise CredentialsError(f"secret_id from {self.source} is empty or has spaces")
        if not self.secret_key or self.secret_key.strip() != self.secret_key:
            raise CredentialsError(f"secret key from {self.source} is empty or has spaces")
        # Whatever prints this key by mistake (an exception message, a log line, an alert)
        # shows *** instead: the key may come from a file or the metadata service, where
        # no environment scan would find it.
        register_secret(self.secret_key)
        register_secret(self.token)

    def __str__(self) -> str:
        return f"Credentials(secret_id={self.secret_id!r}, source={self.source!r})"

    def get_credential_info(self) -> tuple[str, str, str | None]:
        """(secret_id, secret_key, token), the triple the SDK signs requests with."""
        return self.secret_id, self.secret_key, self.token


class CvmRoleCredentials:
    """Temporary credentials of the machine's CVM role, refreshed before they expire.

    Unlike the SDK's ``CVMRoleCredential`` it uses a timeout, so a machine that is not a CVM
    instance fails fast instead of hanging.
    """

    _REFRESH_MARGIN_SECONDS = 300

    def __init__(
        self, role: str, *, metadata_url: str = METADATA_ROLE_URL, timeout: float = 2.0
    ) -> None:
        self.role = role
        self.source = f"CVM role {role!r} ({metadata_url})"
        self._url = metadata_url
        self._timeout = timeout
        self._lock = threading.Lock()
        self._current: Credentials | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return f"CvmRoleCredentials(role={self.role!r})"

    def _refresh(self) -> Credentials:
        if self._current is None or time.time() > self._expires - self._REFRESH_MARGIN_SECONDS:
            data = json.loads(_fetch(self._url + self.role, self._timeout))
            if data.get("Code") != "Success":
                raise CredentialsError(f"{self.source} answered Code={data.get('Code')!r}")
            self._current = Credentials(
                data["TmpSecretId"], data["TmpSecretKey"], data.get("Token"), self.source
            )
            self._expires = float(data.get("ExpiredTime", 0))
        return self._current

    @property
    def secret_id(self) -> str:
        """The current temporary SecretId."""
        return self.get_credential_info()[0]

    def get_credential_info(self) -> tuple[str, str, str | None]:
        """(secret_id, secret_key, token), refreshed when close to expiry."""
        with self._lock:
            return self._refresh().get_credential_info()


@dataclass(frozen=True, slots=True)
class CredentialsConfig:
    """The ``credentials:`` part of the daemon config: where the key pair is.

    ``origin`` names the config file and key, for error messages.
    """

    secret_id: str | None = None
    secret_key_file: Path | None = None
    cvm_role: bool = True
    metadata_url: str = METADATA_ROLE_URL
    origin: str = "config"

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, object], *, origin: str = "config"
    ) -> CredentialsConfig:
        """Read the config mapping; a plain ``secret_key`` is refused with where it was found."""
        if "secret_key" in data:
            raise CredentialsError(
                f"{origin}: key 'secret_key': a plain secret key in a config file is refused; "
                "put it in a file readable only by cvmkeeper and give 'secret_key_file', or use "
                "systemd LoadCredential= ($CREDENTIALS_DIRECTORY/secret_key)"
            )
        unknown = set(data) - {"secret_id", "secret_key_file", "cvm_role", "metadata_url"}
        if unknown:
            raise CredentialsError(f"{origin}: unknown key(s) {sorted(unknown)}")
        secret_id = data.get("secret_id")
        key_file = data.get("secret_key_file")
        cvm_role = data.get("cvm_role", True)
        if secret_id is not None and not isinstance(secret_id, str):
            raise CredentialsError(f"{origin}: key 'secret_id' must be a string")
        if key_file is not None and not isinstance(key_file, str):
            raise CredentialsError(f"{origin}: key 'secret_key_file' must be a path string")
        if not isinstance(cvm_role, bool):
            raise CredentialsError(f"{origin}: key 'cvm_role' must be true or false")
        return cls(
            secret_id=secret_id,
            secret_key_file=Path(key_file) if key_file else None,
            cvm_role=cvm_role,
            metadata_url=str(data.get("metadata_url", METADATA_ROLE_URL)),
            origin=origin,
        )


def _fetch(url: str, timeout: float) -> str:
    if not url.startswith(("http://", "https://")):
        raise CredentialsError(f"metadata URL must be http(s): {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - checked above
        body: bytes = response.read()
    return body.decode("utf-8").strip()


def _read_secret_file(path: Path, what: str) -> str:
    try:
        with path.open(encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            value = handle.read().strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if not value:
        raise CredentialsError(f"{what} file {path} is empty")
    register_secret(value)  # before anything is logged about the file (its name may hold it)
    warn_if_shared(path, what, mode)
    return value


def _from_config(config: CredentialsConfig) -> Credentials | None:
    if config.secret_id is None and config.secret_key_file is None:
        return None
    if config.secret_id is None or config.secret_key_file is None:
        missing = "secret_key_file" if config.secret_id else "secret_id"
        raise CredentialsError(
            f"{config.origin}: 'secret_id' and 'secret_key_file' go together; '{missing}' is "
            "missing"
        )
    key = _read_secret_file(config.secret_key_file, "secret key")
    return Credentials(config.secret_id, key, source=f"{config.origin} ({config.secret_key_file})")


def _from_credentials_directory(directory: Path) -> Credentials | None:
    id_file, key_file = directory / SECRET_ID_FILE, directory / SECRET_KEY_FILE
    if not id_file.exists() and not key_file.exists():
        return None
    if not (id_file.exists() and key_file.exists()):
        raise CredentialsError(
            f"${CREDENTIALS_DIRECTORY_ENV} ({directory}) has only one of "
            f"'{SECRET_ID_FILE}' and '{SECRET_KEY_FILE}'"
        )
    token_file = directory / TOKEN_FILE
    token = _read_secret_file(token_file, "token") if token_file.exists() else None
    return Credentials(
        _read_secret_file(id_file, "secret id"),
        _read_secret_file(key_file, "secret key"),
        token,
        source=f"${CREDENTIALS_DIRECTORY_ENV} ({directory})",
    )


def _from_environment(env: Mapping[str, str]) -> Credentials | None:
    secret_id, key = env.get(ENV_SECRET_ID, ""), env.get(ENV_SECRET_KEY, "")
    if not secret_id or not key:
        return None
    return Credentials(secret_id, key, env.get(ENV_TOKEN) or None, source="environment")


def _from_profile_file(path: Path) -> Credentials | None:
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        # The parser's own message quotes the offending line, which may hold the key.
        lines = [str(n) for n, _ in getattr(exc, "errors", [])]
        lines = lines or [str(getattr(exc, "lineno", "?"))]
        raise CredentialsError(f"{path}: not a valid INI file (line {', '.join(lines)})") from None
    if not parser.has_section("default"):
        return None
    section = parser["default"]
    secret_id = section.get("secret_id", "").strip().strip('"')
    key = section.get("secret_key", "").strip().strip('"')
    if not secret_id or not key:
        return None
    return Credentials(secret_id, key, source=str(path))


def _from_cvm_role(url: str, timeout: float) -> CvmRoleCredentials | None:
    try:
        role = _fetch(url, timeout)
    except (OSError, urllib.error.URLError, CredentialsError):
        return None
    if not role or "\n" in role:
        return None
    provider = CvmRoleCredentials(role, metadata_url=url, timeout=timeout)
    try:
        provider.get_credential_info()
    except (OSError, ValueError, KeyError, CredentialsError):
        return None
    return provider


def resolve_credentials(
    config: CredentialsConfig | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    system_file: Path = Path(SYSTEM_PROFILE_FILE),
    metadata_timeout: float = 1.0,
    on_found: Callable[[str], None] | None = None,
) -> Credentials | CvmRoleCredentials:
    """Find credentials in the documented order; raise :class:`CredentialsNotFoundError`.

    ``env`` and ``home`` default to the process environment and ``$HOME``; tests pass their
    own. ``on_found`` receives the source description (for an INFO log line).
    """
    config = config or CredentialsConfig()
    env = os.environ if env is None else env
    home_dir = home if home is not None else Path(env.get("HOME") or Path.home())
    looked_at: list[str] = []
    found: Credentials | CvmRoleCredentials | None = None

    looked_at.append(f"{config.origin}: secret_id + secret_key_file")
    found = _from_config(config)
    if found is None:
        directory = env.get(CREDENTIALS_DIRECTORY_ENV)
        looked_at.append(
            f"${CREDENTIALS_DIRECTORY_ENV}/{{{SECRET_ID_FILE},{SECRET_KEY_FILE}}}"
            + (f" ({directory})" if directory else " (not set)")
        )
        if directory:
            found = _from_credentials_directory(Path(directory))
    if found is None:
        looked_at.append(f"environment {ENV_SECRET_ID} / {ENV_SECRET_KEY}")
        found = _from_environment(env)
    if found is None:
        for path in (home_dir / ".tencentcloud" / "credentials", system_file):
            looked_at.append(f"{path} [default] secret_id / secret_key")
            found = _from_profile_file(path)
            if found is not None:
                break
    if found is None:
        if config.cvm_role:
            looked_at.append(f"CVM role via {config.metadata_url}")
            found = _from_cvm_role(config.metadata_url, metadata_timeout)
        else:
            looked_at.append("CVM role (disabled: cvm_role: false)")
    if found is None:
        raise CredentialsNotFoundError(looked_at)
    if on_found is not None:
        on_found(found.source)
    return found
