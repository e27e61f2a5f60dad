"""Parameter files: read, merge (``extends``) and validate ``params/*.yaml`` against :mod:`studylib.params`.

A parameter set is a YAML file whose keys follow :class:`~studylib.params.StudyParams`. A file may
start from another with ``extends: NAME`` (a sibling file ``NAME.yaml``, or a
path relative to the file) and override any subset of keys; nested sections are
merged key by key, with two rules for cohorts: a cohort whose ``source`` differs
from the inherited one replaces it whole (a real HCP folder inherits nothing from
a simulated cohort of the same name), and ``NAME: null`` drops an inherited
cohort. ``KEY: null`` over any other inherited mapping (e.g. ``budget: null``) drops it, so that the key's
default applies. Relative paths inside a file resolve against that file's directory.
A cohort with ``required: true`` whose files are not in the data directory is an
error here, naming the cohort and the files.

Every problem (unknown key, wrong type, impossible value, missing data
directory, a cycle in ``extends``) raises :class:`~studylib.params.ParamsError` naming the key
and the file that set it.

Examples
--------
>>> from studylib.study.config import load_params
>>> params = load_params("params/smoke.yaml")      # doctest: +SKIP
>>> params.train.epochs                             # doctest: +SKIP
2
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from ..params import COHORT_SCHEMAS, DataParams, ParamsError, StudyParams, resolve_data_dir

__all__ = ["absent_data_note", "load_params", "params_name"]

Schema = TypeVar("Schema", bound=DataParams)


# --------------------------------------------------------------------------- loading

def _is_path_key(loc: tuple[str, ...]) -> bool:
    return loc == ("data_dir",) or (
        len(loc) == 3 and loc[0] == "cohorts" and loc[2] in ("path", "phenotypes", "registration_sphere"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: parameter file not found") from None
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read parameter file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _absolutise_paths(data: dict[str, Any], base: Path, prefix: tuple[str, ...] = ()) -> None:
    for key, value in data.items():
        loc = (*prefix, key)
        if isinstance(value, dict):
            _absolutise_paths(value, base, loc)
        elif _is_path_key(loc) and isinstance(value, str):
            data[key] = str((base / Path(value).expanduser()).resolve())


def _merge(
    base: dict[str, Any], override: dict[str, Any], origin: dict[tuple[str, ...], Path], source: Path,
    prefix: tuple[str, ...] = (),
) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        loc = (*prefix, key)
        cohort = prefix == ("cohorts",)
        # `name: null` drops an inherited cohort; `key: null` over an inherited mapping (a section such as
        # `budget`, or a table such as `transfer.cohort_arms`) drops it, so that the key's default applies
        if value is None and (cohort or isinstance(merged.get(key), dict)):
            merged.pop(key, None)
            for stale in [k for k in origin if k[: len(loc)] == loc]:
                del origin[stale]
            continue
        other_source = (cohort and isinstance(value, dict) and isinstance(merged.get(key), dict)
                        and value.get("source", merged[key].get("source")) != merged[key].get("source"))
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not other_source:
            merged[key] = _merge(merged[key], value, origin, source, loc)
        else:
            merged[key] = value
            for stale in [k for k in origin if k[: len(loc)] == loc]:
                del origin[stale]
        origin[loc] = source
    return merged


def _load_raw(path: Path, chain: tuple[Path, ...], origin: dict[tuple[str, ...], Path]) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ParamsError(f"{chain[-1]}: extends: cycle {cycle}")
    data = _read_yaml(path)
    _absolutise_paths(data, path.parent)
    parent_name = data.pop("extends", None)
    if parent_name is None:
        return _merge({}, data, origin, path)
    if not isinstance(parent_name, str) or not parent_name:
        raise ParamsError(f"{path}: extends: expected the name of another parameter file, got {parent_name!r}")
    parent = Path(parent_name)
    if parent.suffix not in (".yaml", ".yml"):
        parent = parent.with_suffix(".yaml")
    parent = path.parent / parent
    if not parent.is_file():
        raise ParamsError(f"{path}: extends: {parent_name!r} not found (looked for {parent})")
    base = _load_raw(parent, (*chain, path), origin)
    return _merge(base, data, origin, path)


def _describe(error: dict[str, Any], origin: dict[tuple[str, ...], Path], default: Path) -> str:
    loc = tuple(str(part) for part in error["loc"])
    cohort_source = None
    if len(loc) >= 3 and loc[0] == "cohorts" and loc[2] in COHORT_SCHEMAS:  # pydantic names the union's member
        cohort_source, loc = loc[2], loc[:2] + loc[3:]
    source = default
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in origin:
            source = origin[loc[:cut]]
            break
    key = ".".join(loc) if loc else "(top level)"
    if error["type"] == "extra_forbidden":
        if cohort_source is not None and len(loc) == 3:
            allowed = ["source", *(k for k in COHORT_SCHEMAS[cohort_source].model_fields if k != "source")]
            return (f"{source}: {key}: does not apply to a cohort of source '{cohort_source}' (its keys: "
                    f"{', '.join(allowed)})")
        allowed = _allowed_keys(loc[:-1])
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"{source}: {key}: unknown key{hint}"
    if error["type"] == "union_tag_not_found":
        return f"{source}: {key}.source: required key is missing (one of {', '.join(COHORT_SCHEMAS)})"
    if error["type"] == "union_tag_invalid":
        return (f"{source}: {key}.source: {error['ctx'].get('tag')!r} is not a source; choose from "
                f"{', '.join(COHORT_SCHEMAS)}")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{source}: {key}: required key is missing"
    got = error.get("input")
    # Our own validators already quote the offending value.
    shown = "" if error["type"] == "value_error" or isinstance(got, dict) or got is None else f" (got {got!r})"
    return f"{source}: {key}: {message}{shown}"


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    model: Any = StudyParams
    parts = list(loc)
    while parts and model is not None:
        part = parts.pop(0)
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if get_origin(annotation) is dict:  # a mapping of named sections: skip the name
            annotation = get_args(annotation)[1]
            if parts:
                parts.pop(0)
            else:
                return []
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    if model is None:
        return []
    keys = list(model.model_fields)
    return ["extends", *keys] if model is StudyParams else keys


def load_params(path: str | os.PathLike[str], schema: type[Schema] = StudyParams) -> Schema:
    """Read, merge (``extends``) and validate a parameter file.

    Parameters
    ----------
    path : str or path-like
        A YAML parameter file, e.g. ``params/default.yaml``.
    schema : {StudyParams, DataParams}
        What to validate: the whole study, or only the sections that say which data it reads (``studylib cohort
        build`` accepts a file with just ``seed``, ``data_dir`` and ``cohorts``; other study sections in it are not
        checked).

    Returns
    -------
    StudyParams or DataParams
        The validated, fully resolved parameter set.

    Raises
    ------
    ParamsError
        Naming the file and key of every problem found, and every required cohort whose data are absent.
    """
    path = Path(path).resolve()
    origin: dict[tuple[str, ...], Path] = {}
    raw = _load_raw(path, (), origin)
    if schema is not StudyParams:
        raw = {key: value for key, value in raw.items() if key in schema.model_fields or key not in StudyParams.model_fields}
    try:
        params = schema.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err, origin, path) for err in exc.errors()]
        raise ParamsError("invalid parameters:\n  " + "\n  ".join(lines)) from None
    _check_required_data(params, origin, path)
    if isinstance(params, StudyParams):
        from .budget import check_budget_names

        try:
            check_budget_names(params.budget)
        except ValueError as exc:
            raise ParamsError(f"invalid parameters in {path}:\n  {exc}") from None
    return params


def _check_required_data(params: DataParams, origin: dict[tuple[str, ...], Path], default: Path) -> None:
    """A required cohort whose files are not in the data directory fails now, not minutes into a run."""
    if not any(spec.source == "semi-real" and spec.required for spec in params.cohorts.values()):
        return
    from ..data.files import absent_data, fetch_commands

    data_dir = resolve_data_dir(params)
    lines = []
    for name, files in absent_data(params.cohorts, data_dir).items():
        if params.cohorts[name].required:
            where = origin.get(("cohorts", name, "required"), origin.get(("cohorts", name), default))
            lines.append(f"{where}: cohorts.{name}: required, but the data directory {data_dir} lacks "
                         f"{', '.join(files)}; fetch them ({'; '.join(fetch_commands(files, data_dir))}) or set "
                         f"cohorts.{name}.required: false")
    if lines:
        raise ParamsError("invalid parameters:\n  " + "\n  ".join(lines))


def absent_data_note(params: DataParams) -> str:
    """A note naming every file the data directory lacks for the optional cohorts that will be skipped, and how to
    fetch them; empty when nothing is missing (the runner and ``cohort build`` print it once, at the start)."""
    if not any(spec.source == "semi-real" for spec in params.cohorts.values()):
        return ""
    from ..data.files import absent_data, fetch_commands

    data_dir = resolve_data_dir(params)
    absent = absent_data(params.cohorts, data_dir)
    if not absent:
        return ""
    lines = [f"NOTE: the data directory {data_dir} lacks files that optional cohorts need; they will be skipped:"]
    lines += [f"  cohort {name}: {', '.join(files)}" for name, files in absent.items()]
    commands = fetch_commands(sorted({f for files in absent.values() for f in files}), data_dir)
    lines.append(f"  Online, fetch them: {'; '.join(commands)} (see the README, 'Cohorts and real data').")
    return "\n".join(lines)


def params_name(path: str | os.PathLike[str]) -> str:
    """The name a parameter set's results go under: the file's stem (``params/smoke.yaml`` -> ``smoke``)."""
    return Path(path).stem
