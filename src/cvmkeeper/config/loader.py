"""Where the files are, and loading them: ``load_config``, ``load_policies``, ``load_setup``.

Every loader raises one ``ConfigError`` carrying all problems of all files, so a user
fixes everything in one round. Nothing here raises anything else for bad input: a file
that is missing, unreadable, not UTF-8, not YAML or simply wrong is a ``Problem``.

``load_setup(path, partial=True)`` is what the daemon and ``run`` use (issue #19): one bad
policy file must never stop the other policies. The good policies are loaded and each bad
file becomes a :class:`BrokenPolicy` in ``Setup.broken`` (reported as an error on every
run, ``executor.broken``; its images are held, ``core.holds``). What still raises: a bad
daemon config file, a policies directory that cannot be listed or holds no policy file,
and a directory where no policy file at all can be used (nothing would run, so nothing
would report the broken files).
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

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
class BrokenPolicy:
    """A policy file that could not be used: its problems, the policy name it declares
    when that much could be read, and whether the policy of a previous load stands in
    for it (``stand_in``: a daemon reload keeps the old version of a policy whose file
    became bad; see docs/operations.md "A bad policy file")."""

    file: str
    problems: tuple[Problem, ...]
    name: str | None = None
    stand_in: bool = False

    def summary(self) -> str:
        """One line: the file and its first problem (``+N more``)."""
        first = str(self.problems[0]) if self.problems else f"{self.file}: cannot be used"
        more = len(self.problems) - 1
        return f"{first} (+{more} more)" if more > 0 else first


@dataclass(frozen=True, slots=True)
class Setup:
    """A loaded daemon config and its policies, checked together.

    ``broken`` lists the policy files a partial load could not use (always empty from a
    strict load, which raises instead).
    """

    config: Config
    policies: tuple[Policy, ...]
    broken: tuple[BrokenPolicy, ...] = ()

    def policy(self, name: str) -> Policy | None:
        """The policy called ``name``, if there is one."""
        return next((p for p in self.policies if p.name == name), None)

    @property
    def holding(self) -> tuple[BrokenPolicy, ...]:
        """The broken files no old policy stands in for: while there is one, images of
        policies not loaded are held (``core.holds``), never rotated."""
        return tuple(b for b in self.broken if not b.stand_in)

    @property
    def hold_reason(self) -> str:
        """Why images of policies not loaded are held (``PlannerSettings.hold_unknown``):
        empty when no broken file holds them. Every command that plans (``run``,
        ``plan``, ``images``, ``report``) uses this, so each shows the same holds."""
        holding = self.holding
        if not holding:
            return ""
        return f"policy file(s) {', '.join(b.file for b in holding)} cannot be used"


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


def _declared_name(root: Node | None) -> str | None:
    """The ``name:`` a policy file's root mapping declares, if it is a plain string."""
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "name":
            return (str(value.value) or None) if isinstance(value, yaml.ScalarNode) else None
    return None


def _read_policies(
    directory: Path, default_regions: tuple[str, ...], default_on_quota_full: OnQuotaFull
) -> tuple[list[Policy], list[BrokenPolicy], list[Problem]]:
    """Every policy file of ``directory``: the good policies, the broken files, and the
    problems of the directory itself (it cannot be listed, or holds no policy file)."""
    files, problems = _policy_files(directory)
    policies: list[Policy] = []
    broken: list[BrokenPolicy] = []
    first_seen: dict[str, Policy] = {}
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
        if policy is not None and not reader.problems and policy.name in first_seen:
            name_node = next(
                (v for k, v in getattr(root, "value", []) if getattr(k, "value", None) == "name"),
                root,
            )
            assert name_node is not None
            reader.problems.append(
                Problem(
                    reader.source,
                    name_node.start_mark.line + 1,
                    name_node.start_mark.column + 1,
                    "name",
                    f"policy name {policy.name!r} is already used by "
                    f"{first_seen[policy.name].source}",
                )
            )
        if policy is None or reader.problems:
            found = tuple(sorted(set(reader.problems))) or (
                Problem(reader.source, 0, 0, "", "cannot be used"),
            )
            broken.append(BrokenPolicy(reader.source, found, _declared_name(root)))
            continue
        first_seen[policy.name] = policy
        policies.append(policy)
    return policies, broken, problems


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
    policies, broken, problems = _read_policies(
        Path(directory), default_regions, default_on_quota_full
    )
    problems += [problem for file in broken for problem in file.problems]
    if problems:
        raise ConfigError(problems)
    return policies


def unknown_ping_policies(
    config: Config, policies: Sequence[Policy], broken: Sequence[BrokenPolicy]
) -> list[Problem]:
    """``notify.healthchecks`` keys that name no policy: a typo there leaves a policy
    unmonitored while the config looks complete (a Healthchecks check never pinged stays
    "new" and never alerts). A broken policy file's declared name counts as known."""
    known = [p.name for p in policies] + [b.name for b in broken if b.name]
    problems = []
    for name, _url in config.notify.healthchecks:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else f" (policies: {', '.join(known)})"
        problems.append(
            Problem(
                display_path(config.source),
                0,
                0,
                f"notify.healthchecks.{name}",
                f"no policy has this name{hint}; no run would ever ping this URL",
            )
        )
    return problems


def load_setup(
    path: str | os.PathLike[str], *, partial: bool = False, need_policies: bool = True
) -> Setup:
    """Load the daemon config and its policies; one ``ConfigError`` lists every problem.

    The policies are checked even when the config file has problems (with the defaults of
    the keys that failed), so one run of ``validate`` shows everything that is wrong.

    ``partial=True`` (the daemon, ``run``): bad policy files do not raise; they are
    returned in ``Setup.broken`` beside the good policies. Problems of the config file or
    of the policies directory, or no usable policy at all, still raise; the last does not
    with ``need_policies=False`` (``restore``, which needs the daemon config only).
    """
    source = Path(path)
    reader, root = _compose_file(source)
    config = read_config(reader, root, absolute(source)) if root is not None else None
    problems = list(reader.problems)
    if config is None:
        raise ConfigError(problems)
    policies, broken, dir_problems = _read_policies(
        Path(config.policies_dir), config.regions, config.on_quota_full
    )
    problems += dir_problems
    problems += unknown_ping_policies(config, policies, broken)
    file_problems = [problem for file in broken for problem in file.problems]
    if not partial or problems or (need_policies and not policies):
        problems += file_problems
    if problems:
        raise ConfigError(problems)
    return Setup(config=config, policies=tuple(policies), broken=tuple(broken))


def with_stand_ins(setup: Setup, previous: Setup) -> Setup:
    """``setup`` (a partial load on reload) with the policy of ``previous`` kept for each
    broken file that held a policy before: the same file, or the same declared name, when
    no good policy of ``setup`` has taken that name. Such a file is marked ``stand_in``;
    its images are rotated by the old version instead of being held (docs/operations.md
    "A bad policy file")."""
    policies = list(setup.policies)
    names = {policy.name for policy in policies}
    broken: list[BrokenPolicy] = []
    for file in setup.broken:
        old = next((p for p in previous.policies if p.source == file.file), None)
        if old is None and file.name:
            old = previous.policy(file.name)
        if old is None or old.name in names:
            broken.append(file)
            continue
        policies.append(old)
        names.add(old.name)
        broken.append(replace(file, stand_in=True, name=old.name))
    return replace(setup, policies=tuple(policies), broken=tuple(broken))
