"""Where the files are, and loading them: ``load_config``, ``load_policies``, ``load_setup``.

Every loader raises one ``ConfigError`` carrying all problems of all files, so a user
fixes everything in one round. Nothing here raises anything else for bad input: a file
that is missing, unreadable, not UTF-8, not YAML or simply wrong is a ``Problem``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cvmkeeper.config.daemon_file import read_config as _read_config
from cvmkeeper.config.errors import ConfigError, Problem
from cvmkeeper.config.model import CONFIG_ENV, DEFAULT_CONFIG_PATH, Config
from cvmkeeper.config.paths import absolute, display_path
from cvmkeeper.config.policy_file import read_policy as _read_policy
from cvmkeeper.config.reader import Node, Reader
from cvmkeeper.core.policy import OnQuotaFull, Policy

MAX_FILE_BYTES = 1_000_000
POLICY_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Setup:
    """A loaded daemon config and its policies, checked together."""

    config: Config
    policies: tuple[Policy, ...]

    def policy(self, name: str) -> Policy | None:
        """The policy called ``name``, if there is one."""
        return next((p for p in self.policies if p.name == name), None)


def config_path(
    option: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> Path:
    """The config file to use: ``--config``, else ``$CVMKEEPER_CONFIG``, else the default."""
    environ = os.environ if env is None else env
    if option:
        return Path(option)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def _not_regular(mode: int) -> str | None:
    """Why a file of ``mode`` is not read (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        kind = "a FIFO (named pipe)"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    else:
        kind = "a special file"
    return f"is {kind}, not a regular file; refused"


def _read_text(path: Path, reader: Reader) -> str | None:
    """The text of ``path``, or ``None`` with a problem naming the file.

    Only a regular file is read. Its type is checked before it is opened, and it is opened
    without blocking (``O_NONBLOCK``) and checked again on the open descriptor, so a FIFO,
    a socket or a device where a file belongs is refused at once instead of waiting forever
    for a writer, even if it is swapped in between the check and the open.
    """
    fd = -1
    try:
        refused = _not_regular(os.stat(path).st_mode)
        if refused is None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            refused = _not_regular(os.fstat(fd).st_mode)
        if refused is not None:
            reader.problem(None, "", refused)
            return None
        os.set_blocking(fd, True)
        with os.fdopen(fd, encoding="utf-8") as handle:
            fd = -1  # the handle owns it now
            status = os.fstat(handle.fileno())
            reader.file_mode = status.st_mode
            size = status.st_size
            if size > MAX_FILE_BYTES:
                reader.problem(
                    None, "", f"is {size} bytes; a config file is at most {MAX_FILE_BYTES}"
                )
                return None
            return handle.read()
    except FileNotFoundError:
        reader.problem(None, "", "no such file")
    except PermissionError:
        reader.problem(None, "", "permission denied")
    except UnicodeDecodeError as exc:
        reader.problem(None, "", f"is not UTF-8 text (byte {exc.start})")
    except OSError as exc:
        reader.problem(None, "", f"cannot be read: {exc.strerror or type(exc).__name__}")
    finally:
        if fd >= 0:
            os.close(fd)
    return None


#: What a value too large, too deep or too strange can still raise from inside a check that
#: did not expect it. The checks bound every key; this is the net under them, so that no
#: input ever becomes a traceback (exit 1) instead of a problem naming its file (exit 2).
_UNEXPECTED = (ArithmeticError, RecursionError, RuntimeError, ValueError, OSError, TypeError)


def _unexpected(reader: Reader, exc: BaseException) -> None:
    reader.problem(
        None,
        "",
        f"cannot be checked ({type(exc).__name__}: a value is out of range or the "
        "file is nested too deeply); please report this file as a bug",
    )


def read_config(reader: Reader, root: Node, source: Path) -> Config | None:
    """``daemon_file.read_config`` that turns any unexpected exception into a problem."""
    try:
        return _read_config(reader, root, source)
    except _UNEXPECTED as exc:
        _unexpected(reader, exc)
        return None


def read_policy(
    reader: Reader,
    root: Node,
    *,
    default_regions: tuple[str, ...] = (),
    default_on_quota_full: OnQuotaFull = "evict",
) -> Policy | None:
    """``policy_file.read_policy`` that turns any unexpected exception into a problem."""
    try:
        return _read_policy(
            reader,
            root,
            default_regions=default_regions,
            default_on_quota_full=default_on_quota_full,
        )
    except _UNEXPECTED as exc:
        _unexpected(reader, exc)
        return None


def _compose_file(path: Path) -> tuple[Reader, Node | None]:
    reader = Reader(display_path(path))
    text = _read_text(path, reader)
    return reader, (reader.compose(text) if text is not None else None)


def parse_config_text(text: str, source: Path) -> Config:
    """Validate config ``text`` as if read from ``source``; raise ``ConfigError``."""
    reader = Reader(display_path(source))
    root = reader.compose(text)
    config = read_config(reader, root, absolute(source)) if root is not None else None
    if config is None or reader.problems:
        raise ConfigError(reader.problems)
    return config


def parse_policy_text(
    text: str,
    source: str = "<policy>",
    *,
    default_regions: tuple[str, ...] = (),
    default_on_quota_full: OnQuotaFull = "evict",
) -> Policy:
    """Validate one policy's YAML ``text``; raise ``ConfigError`` with every problem."""
    reader = Reader(source)
    root = reader.compose(text)
    policy = None
    if root is not None:
        policy = read_policy(
            reader,
            root,
            default_regions=default_regions,
            default_on_quota_full=default_on_quota_full,
        )
    if policy is None or reader.problems:
        raise ConfigError(reader.problems)
    return policy


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the daemon config file; raise ``ConfigError`` with every problem."""
    source = Path(path)
    reader, root = _compose_file(source)
    config = read_config(reader, root, absolute(source)) if root is not None else None
    if config is None or reader.problems:
        raise ConfigError(reader.problems)
    return config


def _why_ignored(entry: Path) -> str | None:
    """Why the policies-directory entry ``entry`` is not read as a policy (``None``: read).

    Every skipped entry has a reason ``validate`` prints, because a policy renamed to
    ``web.yaml.bak`` or ``Web.YAML`` silently stops protecting its images otherwise.
    """
    if entry.name.startswith("."):
        return "hidden file (starts with '.')"
    if entry.suffix not in POLICY_SUFFIXES:
        if entry.suffix.lower() in POLICY_SUFFIXES:
            return f"extension {entry.suffix!r} is not lowercase; only .yaml and .yml are read"
        return "not a .yaml or .yml file"
    try:
        if stat.S_ISDIR(os.stat(entry).st_mode):
            return "is a directory"
    except OSError:
        return None  # read it, so that opening it reports the problem with the file
    return None


def ignored_policy_files(directory: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(file, reason)`` for every entry of the policies directory that is not a policy."""
    try:
        entries = sorted(Path(directory).iterdir())
    except (OSError, RuntimeError):
        return []
    where = display_path(Path(directory))  # entries by their own name, links not followed
    skipped = [(entry, _why_ignored(entry)) for entry in entries]
    return [(os.path.join(where, entry.name), why) for entry, why in skipped if why is not None]


def _policy_files(directory: Path) -> tuple[list[Path], list[Problem]]:
    where = display_path(directory)
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return [], [Problem(where, 0, 0, "", "policies directory does not exist")]
    except NotADirectoryError:
        return [], [Problem(where, 0, 0, "", "policies_dir is not a directory")]
    except OSError as exc:
        return [], [Problem(where, 0, 0, "", f"cannot list: {exc.strerror or type(exc).__name__}")]
    files = [entry for entry in entries if _why_ignored(entry) is None]
    if not files:
        return [], [Problem(where, 0, 0, "", "no policy files (*.yaml) in the policies directory")]
    return files, []


def load_policies(
    directory: str | os.PathLike[str],
    *,
    default_regions: tuple[str, ...] = (),
    default_on_quota_full: OnQuotaFull = "evict",
) -> list[Policy]:
    """Read every ``*.yaml`` policy of ``directory`` (sorted by file name).

    Raises one ``ConfigError`` with the problems of every file, including policy names
    used twice. Files starting with '.' (editor leftovers) are ignored.
    """
    files, problems = _policy_files(Path(directory))
    policies: list[Policy] = []
    first_seen: dict[str, tuple[Policy, Node]] = {}
    for path in files:
        reader, root = _compose_file(path)
        policy = None
        if root is not None:
            policy = read_policy(
                reader,
                root,
                default_regions=default_regions,
                default_on_quota_full=default_on_quota_full,
            )
        problems.extend(reader.problems)
        if policy is None or root is None:
            continue
        name_node = next(
            (v for k, v in getattr(root, "value", []) if getattr(k, "value", None) == "name"), root
        )
        if policy.name in first_seen:
            other = first_seen[policy.name][0]
            problems.append(
                Problem(
                    reader.source,
                    name_node.start_mark.line + 1,
                    name_node.start_mark.column + 1,
                    "name",
                    f"policy name {policy.name!r} is already used by {other.source}",
                )
            )
            continue
        first_seen[policy.name] = (policy, name_node)
        policies.append(policy)
    if problems:
        raise ConfigError(problems)
    return policies


def load_setup(path: str | os.PathLike[str]) -> Setup:
    """Load the daemon config and its policies; one ``ConfigError`` lists every problem.

    The policies are checked even when the config file has problems (with the defaults of
    the keys that failed), so one run of ``validate`` shows everything that is wrong.
    """
    source = Path(path)
    reader, root = _compose_file(source)
    config = read_config(reader, root, absolute(source)) if root is not None else None
    problems = list(reader.problems)
    if config is None:
        raise ConfigError(problems)
    try:
        policies = load_policies(
            config.policies_dir,
            default_regions=config.regions,
            default_on_quota_full=config.on_quota_full,
        )
    except ConfigError as error:
        problems.extend(error.problems)
        policies = []
    if problems:
        raise ConfigError(problems)
    return Setup(config=config, policies=tuple(policies))
