"""Records to pandas DataFrames: the one place that builds them (and imports pandas).

Every frame has fixed columns and dtypes, cast explicitly so they do not depend on the pandas
version (pandas 3 infers ``str`` and microsecond datetimes where pandas 2 did not) and so an
empty result has the same columns and dtypes as a full one:

- ``state`` is an ordered Categorical in lifecycle order, ``outcome`` a Categorical;
- integer columns are nullable ``Int64`` (a running attempt's exit code is ``<NA>``);
- every timestamp is ``datetime64[us, UTC]`` (microseconds reach any year a job may name);
  durations and timeouts are float seconds;
- text columns (``command``, ``group``, ``last_error``, ...) are ``string``;
- ``tags`` is ``object``, each job's tuple of tags (``()`` for none), not comma-joined text:
  pandas 2 and 3 keep it alike (hashable tuples: ``value_counts``, ``groupby``), and a test is
  exact (``frame[frame.tags.map(lambda t: "gpu" in t)]``; ``str.contains`` would match ``gpu2``).
  Derived columns follow pandas' inference (``explode()``: ``str`` on pandas 3, ``object`` on 2).

Job frames are indexed by job ``id``; the attempt history has one row per attempt, in start
order, with ``job_id`` and ``attempt`` columns. Params are in the results frame only.

The results frame (:func:`results_frame`), indexed by ``id``, has a job's params in first-seen
order, then ``group`` (``string``), ``state``, ``attempts`` (``Int64``), ``duration`` (float
seconds of the latest attempt, NaN while it runs or before), then its result's keys in
first-seen order, nested objects flattened with ``.`` (``{"loss": {"train": 0.1}}`` gives
``loss.train``, ``{}`` nothing). A param or result column is typed by its values, nulls aside:
booleans ``boolean``; whole numbers ``Int64`` (``object`` past 64 bits); reals (whole ones
too) ``float64``; text or mixed kinds (text and numbers, booleans and numbers) ``string``,
written by ``str``; with a list or other non-scalar, or no value at all, ``object``. Missing is
``<NA>`` (NaN in ``float64``, ``None`` in ``object``). No column hides another: a param named
like a fixed column or ``id`` (the index) becomes ``param.<name>``, a result key named like
one of those or a param ``result.<key>`` (``result.state``), prefixed again while taken.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from queuectl.model import Attempt, Job, Outcome, State
from queuectl.model.dependencies import Edge
from queuectl.model.metrics import Metrics
from queuectl.store.rows import JOB_TABLE, TIMES, Table

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

TIMESTAMP: Final = "datetime64[us, UTC]"

JOB_DTYPES: dict[str, str] = {
    "command": "string",
    "group": "string",
    "tags": "object",
    "state": "state",
    "attempts": "Int64",
    "max_retries": "Int64",
    "priority": "Int64",
    "run_at": TIMESTAMP,
    "timeout": "float64",
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "last_error": "string",
    "worker_id": "string",
    "lease_until": TIMESTAMP,
    "cwd": "string",
    "enqueued_from": "string",
    "cancel_requested": "boolean",
}

ATTEMPT_DTYPES: dict[str, str] = {
    "job_id": "string",
    "attempt": "Int64",
    "command": "string",
    "outcome": "outcome",
    "exit_code": "Int64",
    "started_at": TIMESTAMP,
    "finished_at": TIMESTAMP,
    "duration": "float64",
    "worker_id": "string",
    "error": "string",
}

EDGE_DTYPES: dict[str, str] = {
    "parent": "string",
    "child": "string",
    "parent_state": "state",
    "child_state": "state",
    "rule": "string",
}

METRIC_DTYPES: dict[str, str] = {
    "attempts": "Int64",
    **{outcome.value: "Int64" for outcome in Outcome},
    "failure_rate": "float64",
    "runtime_mean": "float64",
    "runtime_p50": "float64",
    "runtime_p95": "float64",
    "runtime_max": "float64",
    "throughput_per_minute": "float64",
    "completed_last_minute": "Int64",
}

#: the results frame's own columns, between the params and the result's keys
RESULT_DTYPES: dict[str, str] = {
    "group": "string",
    "state": "state",
    "attempts": "Int64",
    "duration": "float64",
}


#: the frames' columns that a ``Table`` names otherwise, and the fields of model objects
_JOB_SOURCES = {"group": "job_group"}
_ATTEMPT_SOURCES = {"attempt": "number"}
_JOB_FIELD_OF = {source: name for name, source in _JOB_SOURCES.items()}
_JOB_FIELDS = [  # (field of a Job, column of a Table)
    (_JOB_FIELD_OF.get(column[2:], column[2:]), column[2:]) for column in JOB_TABLE
]
_ATTEMPT_FIELDS = ("job_id", "exit_code", "started_at", "finished_at", "worker_id", "error")


def jobs_frame(table: Table) -> pd.DataFrame:
    """Jobs indexed by ``id``, in the order of ``table`` (of ``rows.JOB_TABLE``)."""
    columns = {name: table[_JOB_SOURCES.get(name, name)] for name in JOB_DTYPES}
    columns["tags"] = _tags(columns["tags"])
    return _frame(columns, JOB_DTYPES, table["id"], "id")


def attempts_frame(table: Table) -> pd.DataFrame:
    """The attempt history, one row per attempt (``table`` of ``rows.ATTEMPT_TABLE``)."""
    columns = {"duration": _durations(table["started_at"], table["finished_at"])}
    columns |= {
        name: table[_ATTEMPT_SOURCES.get(name, name)]
        for name in ATTEMPT_DTYPES
        if name not in columns
    }
    return _frame(columns, ATTEMPT_DTYPES)


def edges_frame(edges: Sequence[Edge]) -> pd.DataFrame:
    """Dependencies, one row per (parent, child) edge, with both states and the rule."""
    columns = {name: [getattr(edge, name) for edge in edges] for name in EDGE_DTYPES}
    columns["parent_state"] = [None if s is None else s.value for s in columns["parent_state"]]
    columns["child_state"] = [state.value for state in columns["child_state"]]
    columns["rule"] = [rule.value for rule in columns["rule"]]
    return _frame(columns, EDGE_DTYPES)


def job_table(jobs: Sequence[Job]) -> Table:
    """Job objects as the ``Table`` a store reads (for a command's listing of jobs)."""
    table = {source: [getattr(job, name) for job in jobs] for name, source in _JOB_FIELDS}
    table["state"] = [job.state.value for job in jobs]
    for name in JOB_DTYPES.keys() & TIMES:
        table[name] = [_epoch(moment) for moment in table[name]]
    return table


def attempt_table(attempts: Sequence[Attempt], commands: Mapping[str, str]) -> Table:
    """Attempt objects as the ``Table`` a store reads; ``commands`` maps job ids to commands."""
    table = {name: [getattr(a, name) for a in attempts] for name in _ATTEMPT_FIELDS}
    table["number"] = [a.number for a in attempts]
    table["command"] = [commands.get(a.job_id) for a in attempts]
    table["outcome"] = [None if a.outcome is None else a.outcome.value for a in attempts]
    for name in ("started_at", "finished_at"):
        table[name] = [_epoch(moment) for moment in table[name]]
    return table


def metrics_frame(metrics: Metrics, location: str) -> pd.DataFrame:
    """The queue's metrics as one row indexed by the queue's location; times in seconds."""
    row: dict[str, Any] = {
        "attempts": metrics.attempts,
        **metrics.by_outcome,
        "failure_rate": metrics.failure_rate,
        "runtime_mean": metrics.runtime_mean,
        "runtime_p50": metrics.runtime_p50,
        "runtime_p95": metrics.runtime_p95,
        "runtime_max": metrics.runtime_max,
        "throughput_per_minute": metrics.throughput_per_minute,
        "completed_last_minute": metrics.completed_last_minute,
    }
    return _frame({k: [v] for k, v in row.items()}, METRIC_DTYPES, [location], "queue")


def results_frame(table: Table) -> pd.DataFrame:
    """Params, where each job stands, and its result: one row per job indexed by ``id``, in
    the order of ``table`` (of ``rows.RESULT_TABLE``; column order and dtypes: see above)."""
    params = _by_key(_objects(table["params"]))
    results: dict[str, Column] = {}
    _flatten(_objects(table["result"]), "", results)
    own = {*RESULT_DTYPES, "id"}
    param_names = _names(params, own, "param.")
    result_names = _names(results, own | set(param_names.values()), "result.")
    typed = {name: _inferred(params[key]) for key, name in param_names.items()}
    fixed = {
        "group": table["job_group"],
        "state": table["state"],
        "attempts": table["attempts"],
        "duration": _durations(table["started_at"], table["finished_at"]),
    }
    typed |= {name: _typed(fixed[name], dtype) for name, dtype in RESULT_DTYPES.items()}
    typed |= {name: _inferred(*results[key]) for key, name in result_names.items()}
    return _frame(typed, None, table["id"], "id")


#: a param or result column: its values (``None`` for missing) and their types
Column = tuple[list[Any], set[type]]
_NOTHING: Mapping[str, Any] = MappingProxyType({})


def _flatten(objects: list[Mapping[str, Any]], prefix: str, into: dict[str, Column]) -> None:
    """Into ``into``, a column per key of ``objects`` (one per job), and the keys of nested
    objects as columns ``key.inner``: a level at a time, faster than a recursion per job."""
    for key, values in _by_key(objects).items():
        name = f"{prefix}{key}"
        kinds = set(map(type, values))
        if any(issubclass(kind, Mapping) for kind in kinds):
            _flatten([v if isinstance(v, Mapping) else _NOTHING for v in values], f"{name}.", into)
            values = [None if isinstance(v, Mapping) else v for v in values]
            if (kinds := set(map(type, values))) == {type(None)}:  # only objects: flattened
                continue
        if name in into:  # {"a.b": 1} beside {"a": {"b": 2}}: one column, either value
            values = [w if v is None else v for v, w in zip(into[name][0], values, strict=True)]
            kinds = set(map(type, values))
        into[name] = values, kinds


def _by_key(objects: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """A list per key of ``objects`` (``None`` where one lacks it), keys in first-seen order.

    A sweep's objects mostly share their keys: when every non-empty one has exactly the keys
    of the first, the columns are read by ``itemgetter`` (no Python loop per object);
    otherwise one pass over every object's items."""
    present = [i for i, obj in enumerate(objects) if obj]
    if not present:
        return {}
    keys = list(objects[present[0]])
    chosen = [objects[i] for i in present] if len(present) < len(objects) else objects
    if sum(map(len, chosen)) == len(keys) * len(chosen):
        try:
            by_object = list(map(itemgetter(*keys, keys[0]), chosen))  # always a tuple
        except KeyError:  # same sizes, other keys
            pass
        else:
            read = list(zip(*by_object, strict=True))[: len(keys)]
            return {
                key: _spread(values, present, len(objects))
                for key, values in zip(keys, read, strict=True)
            }
    columns: dict[str, list[Any]] = {}
    for i, obj in enumerate(objects):
        for key, value in obj.items():
            try:
                columns[key][i] = value
            except KeyError:
                columns[key] = [None] * len(objects)
                columns[key][i] = value
    return columns


def _spread(values: Sequence[Any], at: list[int], size: int) -> list[Any]:
    """``values`` placed at the positions ``at`` of a list of ``size`` (``None`` elsewhere)."""
    if len(at) == size:
        return list(values)
    import numpy as np

    spread = np.full(size, None, dtype=object)
    spread[at] = values
    return list(spread.tolist())


def _names(keys: Collection[str], reserved: set[str], prefix: str) -> dict[str, str]:
    """Each key's column: itself, or if ``reserved`` prefixed (again while that is taken)."""
    taken, names = reserved | set(keys), {}
    for key in keys:
        name = key
        while name in reserved or (name != key and name in taken):
            name = prefix + name
        taken.add(name)
        names[key] = name
    return names


def _inferred(values: list[Any], kinds: set[type] | None = None) -> Any:
    """A param or result column typed by the ``kinds`` (types) of its values (rules above)."""
    kinds = (set(map(type, values)) if kinds is None else kinds) - {type(None)}
    numbers = not any(issubclass(kind, str | bool) for kind in kinds)
    if not kinds or not all(issubclass(kind, str | int | float) for kind in kinds):
        dtype = "object"
    elif all(issubclass(kind, bool) for kind in kinds):
        dtype = "boolean"
    elif numbers and all(issubclass(kind, int) for kind in kinds):
        try:
            return _typed(values, "Int64")
        except OverflowError:  # a whole number past 64 bits: kept exact, as a Python int
            dtype = "object"
    elif numbers:
        try:
            return _typed(values, "float64")
        except OverflowError:  # a whole number beyond any float: kept exact, as objects
            dtype = "object"
    else:
        dtype = "string"  # pandas writes the other values with str (NaN is <NA>), 2 and 3 alike
    return _typed(values, dtype)


def state_dtype() -> pd.CategoricalDtype:
    """Job states as an ordered Categorical, in lifecycle order."""
    import pandas as pd

    return pd.CategoricalDtype([s.value for s in State], ordered=True)


def outcome_dtype() -> pd.CategoricalDtype:
    """Attempt outcomes as a Categorical."""
    import pandas as pd

    return pd.CategoricalDtype([o.value for o in Outcome])


_CATEGORIES: dict[str, Callable[[], pd.CategoricalDtype]] = {
    "state": state_dtype,
    "outcome": outcome_dtype,
}


def _frame(
    columns: Mapping[str, Any],
    dtypes: Mapping[str, str] | None,
    index: Sequence[str] | None = None,
    index_name: str | None = None,
) -> pd.DataFrame:
    """A frame of ``columns`` typed by ``dtypes`` (``None``: typed already), in their order."""
    import pandas as pd

    if dtypes is not None:
        columns = {name: _typed(columns[name], dtype) for name, dtype in dtypes.items()}
    frame = pd.DataFrame(dict(columns), columns=list(columns))
    if index is not None:
        frame.index = pd.Index(list(index), dtype="string", name=index_name)
    return frame


def _typed(values: Sequence[Any], dtype: str) -> Any:
    """``values`` (``None`` for missing) as a column of ``dtype``, a name of this module's
    dtype maps; the frequent dtypes through numpy, fast for a million rows."""
    import numpy as np
    import pandas as pd

    if dtype == TIMESTAMP:
        return _timestamps(values)
    if dtype == "float64":
        return np.array(values, dtype=np.float64)  # None is NaN
    if dtype == "Int64":
        if None not in values:
            return pd.arrays.IntegerArray(
                np.array(values, dtype=np.int64), np.zeros(len(values), bool)
            )
        missing = np.array([v is None for v in values], dtype=bool)
        present = np.array([0 if v is None else v for v in values], dtype=np.int64)
        return pd.arrays.IntegerArray(present, missing)
    if dtype == "boolean" and None not in values:
        return pd.arrays.BooleanArray(np.array(values, dtype=bool), np.zeros(len(values), bool))
    if dtype in _CATEGORIES:
        categories = _CATEGORIES[dtype]()
        code = {value: i for i, value in enumerate(categories.categories)}
        codes = np.fromiter(map(code.get, values, repeat(-1)), dtype=np.int8, count=len(values))
        return pd.Categorical.from_codes(codes, dtype=categories)
    resolved: Any = dtype  # "string", "boolean", "object": names the stubs cannot check
    return pd.Series(values, dtype="object").astype(resolved)


def _timestamps(epochs: Sequence[float | None]) -> pd.Series:
    """Epoch seconds to ``datetime64[us, UTC]``, through epoch microseconds, so that neither
    pandas 2 (nanoseconds, up to 2262) nor pandas 3 (inferred units) picks another unit."""
    import pandas as pd

    micros = _micros(epochs)
    return pd.Series(micros.view("datetime64[us]")).dt.tz_localize("UTC").astype(TIMESTAMP)


def _micros(epochs: Sequence[float | None]) -> npt.NDArray[np.int64]:
    """Epoch seconds (``None`` for missing) as whole microseconds, missing as NaT's int."""
    import numpy as np

    seconds = np.array(epochs, dtype=np.float64)  # None is NaN
    missing = np.isnan(seconds)
    micros: npt.NDArray[np.int64] = np.rint(np.where(missing, 0.0, seconds) * 1e6).astype(np.int64)
    micros[missing] = np.iinfo(np.int64).min  # NaT
    return micros


def _durations(started: Sequence[float | None], finished: Sequence[float | None]) -> Any:
    """Float seconds from each start to its finish, to the microsecond (NaN if either is
    missing), as ``Attempt.duration`` has them."""
    import numpy as np

    begun, ended = _micros(started), _micros(finished)
    nat = np.iinfo(np.int64).min
    return np.where((begun == nat) | (ended == nat), np.nan, (ended - begun) / 1_000_000)


def _epoch(moment: datetime | None) -> float | None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError("naive datetime in a record: the store must return UTC times")
    return None if moment is None else moment.timestamp()


def _tags(values: Sequence[str | tuple[str, ...] | None]) -> list[tuple[str, ...]]:
    """Each job's tags as a tuple, from the JSON text a store keeps (or a tuple already):
    each distinct text parsed once (a queue has few sets of tags)."""
    parsed = {text: tuple(json.loads(text)) for text in set(values) if isinstance(text, str)}
    return [parsed[v] if isinstance(v, str) else (v or ()) for v in values]


def _objects(texts: Sequence[str | None]) -> list[Mapping[str, Any]]:
    """Params or results from their JSON texts (``{}`` for missing), parsed as one JSON
    array: a million calls of ``json.loads`` cost more than the parsing."""
    present = [text for text in texts if text is not None]
    parsed = iter(json.loads(f"[{','.join(present)}]"))
    return [_NOTHING if text is None else next(parsed) for text in texts]
