"""Strict conversion of parsed YAML/JSON into frozen, typed spec dataclasses, and back.

The loader walks a dataclass's type hints and converts each value, so every spec class states its
schema once, as ordinary annotated fields. Rules:

* An unknown key is an error naming its dotted path, with the closest valid key suggested.
* A wrong type or value is an error naming its path and what was expected.
* ``__class_name__`` keys (TAO "coreobject" specs) are accepted and checked against the class's
  ``CLASS_NAME``; a field typed as a union of spec classes is resolved by it.
* Fields marked with :func:`path_field` hold file paths: relative ones resolve against the folder of
  the spec file; absolute ones (TLT's ``/workspace/...``) are kept as written.
* ``__post_init__`` validation raises :class:`FieldError` (or ``ValueError``) and the loader adds the
  path of the object to the message.
* Every number must be finite (``.inf`` and ``.nan`` are refused wherever a number is expected).
* Spec files are hostile input: a key given twice in one mapping is an error (YAML and JSON), and YAML
  anchors/aliases are refused (an alias "bomb" of a few hundred bytes would otherwise expand to
  gigabytes when the spec is written back into ``detections.json``), as are YAML tags (safe loading).
"""

import copy
import dataclasses
import difflib
import json
import math
import os
import typing
from typing import Any, Dict, List, Literal, Sequence, Tuple, Type, TypeVar, Union

import yaml

from bpnet.errors import SpecError
from bpnet.files import atomic_path

T = TypeVar("T")

CLASS_NAME_KEY = "__class_name__"
_NULL_STRINGS = ("None", "none", "null", "Null")


class FieldError(ValueError):
    """A validation error of one field, raised from a spec class's ``__post_init__``."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field_name = field_name


def path_field(default: Any = dataclasses.MISSING, keep: tuple = ()) -> Any:
    """A dataclass field holding a path (or a dict of paths) resolved against the spec's folder.

    ``keep`` lists literal values that are not paths (for example ``"imagenet"``).
    """
    metadata = {"path": True, "keep": keep}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class _Context:
    """Where a spec comes from: its file (for messages) and its folder (for relative paths)."""

    def __init__(self, source: str, base_dir: str):
        self.source = source
        self.base_dir = base_dir

    def error(self, where: str, message: str) -> SpecError:
        location = f"{self.source}: {where}" if where else self.source
        return SpecError(f"{location}: {message}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_type_name(a) for a in args)})"
    if origin is dict:
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert_scalar(tp: Any, value: Any, where: str, ctx: _Context) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:  # PyYAML reads "1e-5" (no dot) as a string
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        if number is not None:
            raise ctx.error(where, f"expected a finite number, got {_describe(value)}")
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported spec type {tp!r} at {where}")
    raise ctx.error(where, f"expected {_type_name(tp)}, got {_describe(value)}")


def _convert(tp: Any, value: Any, where: str, ctx: _Context) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        optional = type(None) in args
        choices = [a for a in args if a is not type(None)]
        if value is None and optional:
            return None
        if optional and isinstance(value, str) and value in _NULL_STRINGS:
            if all(typing.get_origin(c) is Literal for c in choices):
                return None  # TLT's `keep_aspect_ratio_mode: None` is the string "None" in YAML
        if len(choices) == 1:
            return _convert(choices[0], value, where, ctx)
        if all(dataclasses.is_dataclass(c) for c in choices):
            return _convert_polymorphic(choices, value, where, ctx)
        for choice in choices:
            try:
                return _convert(choice, value, where, ctx)
            except SpecError:
                continue
        raise ctx.error(where, f"expected {_type_name(tp)}, got {_describe(value)}")
    if value is None:
        raise ctx.error(where, f"expected {_type_name(tp)}, got null")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) is type(allowed[allowed.index(value)]):
            return value
        hint = _suggest(str(value), [str(a) for a in allowed])
        raise ctx.error(where, f"expected {_type_name(tp)}, got {_describe(value)}{hint}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, where, ctx)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ctx.error(where, f"expected {_type_name(tp)}, got {_describe(value)}")
        args = typing.get_args(tp)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            item_type = args[0]
            return tuple(_convert(item_type, v, f"{where}[{i}]", ctx) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ctx.error(where, f"expected {_type_name(tp)}, got {_describe(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]", ctx) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ctx.error(where, f"expected {_type_name(tp)}, got {_describe(value)}")
        key_type, value_type = typing.get_args(tp)
        return {_convert(key_type, k, where, ctx): _convert(value_type, v, _join(where, str(k)), ctx) for k, v in value.items()}
    return _convert_scalar(tp, value, where, ctx)


def _suggest(key: str, valid: list) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _class_name(cls: type) -> str:
    return getattr(cls, "CLASS_NAME", None) or cls.__name__


def _convert_polymorphic(choices: list, value: Any, where: str, ctx: _Context) -> Any:
    names = [_class_name(c) for c in choices]
    if not isinstance(value, dict):
        raise ctx.error(where, f"expected a mapping with {CLASS_NAME_KEY} one of {', '.join(names)}")
    name = value.get(CLASS_NAME_KEY)
    if name is None:
        raise ctx.error(where, f"missing {CLASS_NAME_KEY}; expected one of {', '.join(names)}")
    for cls, cls_name in zip(choices, names):
        if name == cls_name:
            return build(cls, value, where, ctx)
    raise ctx.error(
        _join(where, CLASS_NAME_KEY),
        f"expected one of {', '.join(names)}, got {_describe(name)}{_suggest(str(name), names)}",
    )


def _resolve_path(value: Any, keep: tuple, ctx: _Context) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_path(v, keep, ctx) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_resolve_path(v, keep, ctx) for v in value)
    if not isinstance(value, str) or value in keep:
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return os.path.normpath(expanded)
    return os.path.normpath(os.path.join(ctx.base_dir, expanded))


def build(cls: Type[T], data: Any, where: str, ctx: _Context) -> T:
    """Convert a mapping into the frozen dataclass ``cls``, strictly (see the module docstring)."""
    if not isinstance(data, dict):
        raise ctx.error(where, f"expected a mapping for {cls.__name__}, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]  # cls is a dataclass
    expected_name = _class_name(cls)
    given_name = data.get(CLASS_NAME_KEY)
    if given_name is not None and given_name != expected_name:
        raise ctx.error(_join(where, CLASS_NAME_KEY), f"expected {expected_name!r}, got {_describe(given_name)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key == CLASS_NAME_KEY:
            continue
        if key not in fields:
            raise ctx.error(_join(where, str(key)), f"unknown key{_suggest(str(key), sorted(fields))}")
        field = fields[key]
        converted = _convert(hints[key], value, _join(where, key), ctx)
        if field.metadata.get("path"):
            converted = _resolve_path(converted, field.metadata.get("keep", ()), ctx)
        kwargs[key] = converted
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ctx.error(where, f"missing required key '{missing[0]}'")
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ctx.error(_join(where, exc.field_name), str(exc)) from None
    except ValueError as exc:
        raise ctx.error(where, str(exc)) from None


class _StrictYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses anchors/aliases and duplicate keys (see the module docstring)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in spec files", event.start_mark
            )
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise yaml.constructor.ConstructorError(
                None, None, f"YAML anchors (&{event.anchor}) are not allowed in spec files", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _json_object_without_duplicates(pairs: list) -> Dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"key {duplicates[0]!r} is given twice in one object")
    return dict(pairs)


def read_mapping(path: str) -> Dict[str, Any]:
    """Parse a YAML or JSON file into a mapping, with one-line errors naming the file."""
    if not os.path.isfile(path):
        raise SpecError(f"{path}: no such spec file")
    try:
        with open(path, encoding="utf-8") as handle:
            if path.lower().endswith(".json"):
                data = json.load(handle, object_pairs_hook=_json_object_without_duplicates)
            else:
                data = yaml.load(handle, Loader=_StrictYamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply") from None
    except UnicodeDecodeError as exc:  # a ValueError too: caught first
        kind = "JSON" if path.lower().endswith(".json") else "YAML"
        raise SpecError(f"{path}: not a text file (byte {exc.start} is not UTF-8), so not a {kind} spec") from None
    except ValueError as exc:
        raise SpecError(f"{path}: invalid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: {line}invalid YAML: {problem}") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {_describe(data)}")
    return data


def parse_override(text: str) -> Tuple[List[str], Any]:
    """``key.path=value`` → (``["key", "path"]``, value parsed as a YAML scalar or flow list/mapping)."""
    key, sep, raw = text.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(k.strip() for k in keys):
        raise SpecError(f"--set {text!r}: expected key.path=value, for example dataloader.batch_size=4")
    try:
        value = yaml.load(raw, Loader=_StrictYamlLoader) if raw.strip() else None  # noqa: S506 (SafeLoader)
    except yaml.YAMLError as exc:
        raise SpecError(f"--set {text!r}: invalid value: {getattr(exc, 'problem', None) or exc}") from None
    return [k.strip() for k in keys], value


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """A copy of ``data`` with each ``key.path=value`` of ``overrides`` set (intermediate mappings made);
    ``data`` itself when there are none."""
    if not overrides:
        return data
    result = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise SpecError(f"--set {text!r}: {'.'.join(keys[: depth + 1])} is not a mapping")
            node = child
        node[keys[-1]] = value
    return result


def load(cls: Type[T], path: str, overrides: Sequence[str] = ()) -> T:
    """Load the spec file ``path`` (YAML or JSON) as ``cls``; relative paths resolve against its folder.

    ``overrides`` (``key.path=value``, the CLI's ``--set``) are applied to the file's mapping first, so
    they are typed and validated like the file (an unknown key gets the same did-you-mean error).
    """
    path = os.path.abspath(os.path.expanduser(path))
    data = apply_overrides(read_mapping(path), overrides)
    return build(cls, data, "", _Context(path, os.path.dirname(path)))


def from_dict(cls: Type[T], data: Dict[str, Any], base_dir: str = ".", source: str = "<dict>") -> T:
    """Build ``cls`` from an in-memory mapping; relative paths resolve against ``base_dir``."""
    return build(cls, data, "", _Context(source, os.path.abspath(base_dir)))


def to_dict(spec: Any) -> Any:
    """The plain-data form of a spec (mappings, lists, scalars), with ``__class_name__`` keys."""
    if dataclasses.is_dataclass(spec):
        out: Dict[str, Any] = {}
        class_name = getattr(spec, "CLASS_NAME", None)
        if class_name:
            out[CLASS_NAME_KEY] = class_name
        for f in dataclasses.fields(spec):
            if f.init:
                out[f.name] = to_dict(getattr(spec, f.name))
        return out
    if isinstance(spec, (list, tuple)):
        return [to_dict(v) for v in spec]
    if isinstance(spec, dict):
        return {k: to_dict(v) for k, v in spec.items()}
    return spec


def dump_yaml(spec: Any, path: str) -> None:
    """Write a resolved spec as YAML (paths absolute), atomically; it loads back to an equal spec."""
    text = yaml.safe_dump(to_dict(spec), sort_keys=False, default_flow_style=None)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
