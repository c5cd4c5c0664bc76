"""YAML loading that remembers where each value came from.

Assay's error messages name the file and line of the offending key, so the
loader keeps a line number for every mapping key and sequence item, addressed
by its path of keys and indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assay.errors import ConfigError

__all__ = ["LocatedYaml", "load_yaml"]

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class LocatedYaml:
    """Plain YAML data plus the 1-based line of each key path."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """Return the line of `path`, or of its nearest located ancestor."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


class _Loader(yaml.SafeLoader):
    """Safe loader; duplicate keys are rejected instead of silently kept last."""


def _convert(node: yaml.Node, loader: _Loader, path: Path_, lines: dict, file: str):
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise ConfigError(
                    "duplicate key",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    key=".".join(map(str, path + (key,))),
                    value=key,
                    fix="Keep one of the two entries",
                )
            child = path + (key,)
            lines[child] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, loader, child, lines, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            items.append(_convert(item, loader, path + (index,), lines, file))
        return items
    return loader.construct_object(node, deep=True)


def load_yaml(path: Path, *, display: str | None = None) -> LocatedYaml:
    """Load one YAML document from `path`, keeping a line for every key.

    Raises ConfigError naming the file and line for unreadable files and YAML
    syntax errors, so the CLI can print it without a traceback.
    """
    file = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file, fix="Check the path") from None
    except IsADirectoryError:
        raise ConfigError(
            "the path is a folder, not a file",
            file=file,
            fix="Give the path of the YAML file itself",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", file=file) from None

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Path_, int] = {}
        data = _convert(node, loader, (), lines, file) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        where = "at that line"
        context_line = exc.context_mark.line + 1 if exc.context_mark else None
        if exc.problem and exc.context and context_line not in (None, line):
            # The cause is often where the context starts, e.g. an unclosed quote
            # that PyYAML reports only at the end of the file.
            problem = f"{exc.context} that starts at line {context_line}, {problem}"
            where = f"between lines {context_line} and {line}"
        fix = f"Fix the syntax {where} (indentation, a missing colon or quote)"
        if "'\\t'" in problem:
            fix = "Indent with spaces, because YAML does not allow tabs there"
        raise ConfigError(
            f"invalid YAML: {problem}", file=file, line=line, fix=fix
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    return LocatedYaml(file=file, data=data, lines=lines)
