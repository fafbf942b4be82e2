"""Loading rfai's config strictly: a YAML file, then `--set` overrides and `--model`.

The schema (every key's type, default and help) is the dataclasses of `rfai/config.py`; this
module turns plain values into them. Loading is strict in the way nanoGPT's overrides are: an
unknown key, a key given twice, a wrong type or an invalid value is a `ConfigError` that names
the key path, the file and (for keys read from YAML) the line, and says what would be
accepted; a file that is not UTF-8 or not YAML is one line naming its line and column.
Command-line overrides (`--set section.key=value`) go through the same checks. `save_config`
writes the resolved config back as YAML that loads again.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from rfai.config import Config, ConfigError


# PyYAML follows YAML 1.1, where `1e-5` (no dot) is a string. Learning rates are written that
# way, so the loader also resolves such numbers as floats.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _key_lines(text: str, source: str = "<text>", numbered: bool = True) -> dict[str, int]:
    """Map each dotted key path of a YAML document to its 1-based line number.

    A key given twice in one mapping is a `ConfigError` naming both lines: YAML loaders keep
    the later value without a word, so `steps: 5` lower down would silently undo `steps: 50`.
    `numbered`: whether line numbers mean anything to the user (not in a `--set` value).
    """
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` may be overridden
                    continue
                path = f"{prefix}{key_node.value}"
                line = key_node.start_mark.line + 1
                if path in seen:
                    where = f"{source}:{line}" if numbered else source
                    first = f" (first at line {seen[path]})" if numbered else ""
                    raise ConfigError(f"{where}: duplicate key '{path}'{first}; keep one of them")
                seen[path] = lines[path] = line
                walk(value_node, path + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{prefix.rstrip('.')}[{i}].")

    root = yaml.compose(text, Loader=_Loader)
    if root is not None:
        walk(root, "")
    return lines


def _yaml_problem(exc: yaml.YAMLError, source: str, text: str = "") -> str:
    """A PyYAML error on one line, located in `source` (PyYAML itself names
    `"<unicode string>"` and spreads the message over several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.reader.ReaderError):  # a control character; only an offset given
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        where = f"{source}:{line}:{column}"
        problem = f"character #x{exc.character:04x} is not allowed in YAML"
    elif context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        problem += f" ({context})"
    return f"{where}: not valid YAML: {' '.join(problem.split())}"


def _read_text(path: Path) -> str:
    """The file's text, or a `ConfigError` saying where it is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start : exc.start].decode("utf-8")) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


class _Where:
    """Formats 'file:line' locations for error messages."""

    def __init__(self, source: str, lines: dict[str, int] | None = None) -> None:
        self.source = source
        self.lines = lines or {}

    def __call__(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.source}:{line}" if line else self.source


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: _Where) -> Any:
    """Check `value` against the annotation `tp`, converting only where lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where(key)}: '{key}' must be a mapping of keys, got {type(value).__name__}"
            )
        return _build(tp, value, key + ".", where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(
                f"{where(key)}: '{key}' must be a list, got {type(value).__name__} {value!r}"
            )
        return tuple(_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where(key)}: '{key}' must be a mapping, got {type(value).__name__} {value!r}"
            )
        return {
            _coerce(k, args[0], key, where): _coerce(v, args[1], f"{key}.{k}", where)
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a programming error in the dataclasses above
        raise TypeError(f"unsupported config annotation {tp!r} for {key}")
    raise ConfigError(
        f"{where(key)}: '{key}' must be of type {_type_name(tp)}, "
        f"got {type(value).__name__} {value!r}"
    )


def _build(cls: type, values: dict[str, Any], prefix: str, where: _Where) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
        raise ConfigError(
            f"{where(prefix + str(key))}: unknown config key '{prefix}{key}'{hint}. "
            f"Known keys here: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k, where) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        key = str(exc).split(":", 1)[0]
        raise ConfigError(f"{where(key)}: {exc}") from None


def config_from_dict(values: dict[str, Any], source: str = "<dict>") -> Config:
    """Build a `Config` from nested plain values, strictly."""
    return _build(Config, values, "", _Where(source))


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. training.steps=50")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"--set {text!r}: empty key segment in {key!r}")
    if not raw.strip():
        return path, ""
    try:
        _key_lines(raw, f"--set {text}", numbered=False)
        value = yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as exc:
        # The value alone was parsed, so the mark's line and column are within `raw`.
        problem = _yaml_problem(exc, "value", raw).split(": not valid YAML: ", 1)[1]
        raise ConfigError(
            f"--set {text}: the value {raw!r} is not valid YAML ({problem}); write a list "
            f"as [1, 2], a mapping as {{a: 1}}, or quote a string: --set '{key}=\"{raw}\"'"
        ) from None
    return path, value


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def config_to_dict(config: Config) -> dict[str, Any]:
    return _to_plain(config)


def load_config(
    path: str | Path | None,
    overrides: typing.Sequence[str] = (),
    model: str | None = None,
) -> Config:
    """Load `path` (or the defaults when None), then apply `--set` overrides and `--model`."""
    values: dict[str, Any] = {}
    where = _Where("<defaults>")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text = _read_text(path)
        try:
            lines = _key_lines(text, str(path))
            loaded = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise ConfigError(_yaml_problem(exc, str(path), text)) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        values = loaded
        where = _Where(str(path), lines)
    config = _build(Config, values, "", where)

    merged = config_to_dict(config)
    for text in overrides:
        keys, value = _parse_override(text)
        node = merged
        for i, part in enumerate(keys[:-1]):
            if not isinstance(node, dict) or part not in node:
                dotted = ".".join(keys[: i + 1])
                raise ConfigError(f"--set {text}: unknown config section '{dotted}'")
            node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text}: '{'.'.join(keys[:-1])}' is not a section")
        node[keys[-1]] = value
    if model is not None:
        merged["student"]["path"] = model
    if overrides or model is not None:
        config = _build(Config, merged, "", _Where("command line (--set/--model)"))
    return config


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, loadable again with `load_config`."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
