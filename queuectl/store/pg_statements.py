"""The statements of a run's life on PostgreSQL: enqueue, claim, renew, record output, finish;
and their parameters.

Each is one statement, so each is atomic without an explicit transaction. ``NOW`` is the
store's clock: the ``now`` parameter when a test clock is set, else the server's ``now()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from queuectl.model import Config, Fence, NewJob, RunResult, Transition
from queuectl.store.base import PAUSED_KEY
from queuectl.store.dependencies import NO_PARENTS, Parents, batch_parent_ids
from queuectl.store.rows import JOB_COLUMNS, env_text, json_text

NOW = "COALESCE(%(now)s::timestamptz, now())"

# All jobs in one statement (from arrays, one per column), in the order given: the statement
# triggers then run once for the batch, not once per job. A delay counts from the server's
# clock, not from the enqueuing host's.
ENQUEUE = f"""
WITH stale AS (
    -- edges left by a pruned parent whose id a new job takes: not this job's children
    DELETE FROM queuectl.job_edges WHERE parent = ANY(%(ids)s::text[])
)
INSERT INTO queuectl.jobs (id, command, state, max_retries, priority, run_at, timeout,
    created_at, updated_at, cwd, enqueued_from, env, job_group, tags, params, after_rule,
    unmet, cancelled_by, last_error, has_children)
SELECT id, command, state, retries, priority,
    COALESCE(run_at, {NOW} + make_interval(secs => delay)), timeout, {NOW}, {NOW},
    cwd, enqueued_from, env, job_group, tags, params, after_rule, unmet, cancelled_by,
    last_error, has_children
FROM unnest(%(ids)s::text[], %(commands)s::text[], %(states)s::text[], %(retries)s::integer[],
    %(priorities)s::integer[], %(run_ats)s::timestamptz[], %(delays)s::double precision[],
    %(timeouts)s::double precision[], %(cwds)s::text[], %(enqueued_froms)s::text[],
    %(envs)s::text[], %(groups)s::text[], %(tags)s::text[], %(params)s::text[],
    %(after_rules)s::text[], %(unmets)s::integer[], %(cancelled_bys)s::text[],
    %(last_errors)s::text[], %(has_children)s::boolean[])
    WITH ORDINALITY AS new (id, command, state, retries, priority, run_at, delay, timeout, cwd,
        enqueued_from, env, job_group, tags, params, after_rule, unmet, cancelled_by,
        last_error, has_children, position)
ORDER BY position
RETURNING {JOB_COLUMNS}
"""
EDGES = """
INSERT INTO queuectl.job_edges (parent, child)
SELECT * FROM unnest(%(parents)s::text[], %(children)s::text[])
"""

# SKIP LOCKED: concurrent claimers pass over a row another one is taking instead of waiting
# for it, and never get the same one. An attempt is numbered over its job's whole history (a
# retry does not start again at 1). The new attempt id comes from the attempts' sequence,
# so the job row and its attempt row are written by one statement. A paused queue's config row
# is one index probe, made once per statement (it does not depend on the job).
_CLAIMED = f"""
    UPDATE queuectl.jobs SET state = 'processing', attempts = attempts + 1,
        worker_id = %(claimer)s, lease_until = {NOW} + %(lease)s * interval '1 second',
        updated_at = {NOW}, attempt_id = nextval('queuectl.attempts_id_seq')
    WHERE seq = (
        SELECT seq FROM queuectl.jobs
        WHERE state IN ('pending', 'failed') AND run_at <= {NOW}
            AND NOT EXISTS (SELECT FROM queuectl.config WHERE key = '{PAUSED_KEY}')
        ORDER BY priority DESC, run_at, seq
        LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING {JOB_COLUMNS}"""
_STARTED = f"""
    INSERT INTO queuectl.attempts (id, job_id, number, worker_id, started_at)
    SELECT attempt_id, id,
        (SELECT coalesce(max(number), 0) + 1 FROM queuectl.attempts a
            WHERE a.job_id = claimed.id),
        worker_id, {NOW}
    FROM claimed
    RETURNING number"""

CLAIM = f"""
WITH claimed AS ({_CLAIMED}
), started AS ({_STARTED}
)
SELECT {JOB_COLUMNS}, started.number FROM claimed, started
"""

# The rows are locked in id order, as every statement that locks several jobs does (see
# ``pg_control.LOCK_STATES``): two such statements never wait for each other in a circle.
RENEW = f"""
WITH held AS (
    SELECT seq FROM queuectl.jobs
    WHERE state = 'processing' AND (id, attempts, worker_id, attempt_id) IN (
        SELECT * FROM unnest(
            %(ids)s::text[], %(numbers)s::int[], %(workers)s::text[], %(attempt_ids)s::bigint[]))
    ORDER BY id
    FOR UPDATE
)
UPDATE queuectl.jobs SET lease_until = {NOW} + %(lease)s * interval '1 second'
WHERE seq IN (SELECT seq FROM held)
RETURNING attempt_id
"""

# Read per renewal round by each pool: one probe of the jobs' id index per running job.
CANCEL_REQUESTS = """
SELECT attempt_id FROM queuectl.jobs
WHERE cancel_requested AND (id, attempt_id) IN (
    SELECT * FROM unnest(%(ids)s::text[], %(attempt_ids)s::bigint[]))
"""

# Output so far, while the whole fence holds. A finish that commits first has set finished_at
# (a concurrent one waits for this row and then overwrites it), so the final output always
# wins over a late partial one.
RECORD_OUTPUT = """
UPDATE queuectl.attempts SET stdout = %(stdout)s, stderr = %(stderr)s,
    stdout_bytes = %(stdout_bytes)s, stderr_bytes = %(stderr_bytes)s
WHERE id = %(attempt_id)s AND finished_at IS NULL AND EXISTS (
    SELECT FROM queuectl.jobs
    WHERE id = %(id)s AND attempts = %(attempt)s AND worker_id = %(worker)s
        AND attempt_id = %(attempt_id)s AND state = 'processing')
RETURNING id
"""

# The job moves only under its whole fence; the attempt row is written only if it did. A job
# with a cancel request ends cancelled however its run ended, unless the run completed it
# (the work is done then); its last_error says how the run ended.
_MOVED = f"""
    UPDATE queuectl.jobs SET
        state = CASE WHEN cancel_requested AND %(state)s::text <> 'completed'
            THEN 'cancelled' ELSE %(state)s::text END,
        run_at = CASE WHEN %(state)s::text = 'failed' AND NOT cancel_requested
            THEN {NOW} + %(delay)s * interval '1 second' ELSE run_at END,
        last_error = COALESCE(%(last_error)s::text, last_error), cancel_requested = false,
        worker_id = NULL, lease_until = NULL, updated_at = {NOW}
    WHERE id = %(id)s AND attempts = %(attempt)s AND worker_id = %(worker)s
        AND attempt_id = %(attempt_id)s AND state = 'processing' {{expiry}}
    RETURNING attempt_id"""
_RECORDED = f"""
    UPDATE queuectl.attempts SET finished_at = {NOW}, exit_code = %(exit_code)s,
        outcome = %(outcome)s, error = %(error)s, stdout = %(stdout)s, stderr = %(stderr)s,
        stdout_bytes = %(stdout_bytes)s, stderr_bytes = %(stderr_bytes)s, result = %(result)s
    WHERE id = (SELECT attempt_id FROM moved)
    RETURNING id"""

_FINISH = f"""
WITH moved AS ({_MOVED}
){_RECORDED}
"""
FINISH = _FINISH.format(expiry="")
#: recovery of a lost run: only if the lease is still expired (a renewal may have won)
FINISH_IF_EXPIRED = _FINISH.format(expiry=f"AND lease_until < {NOW}")

# A pool thread's result and its next claim in one statement: one round trip and one commit
# per job. Every part sees the snapshot from before the statement, so the job being finished
# (still 'processing' there) is never the one claimed. The row always comes back: whether
# the fence held, then the claimed job's columns and its attempt's number (all NULL when
# there was nothing to claim).
FINISH_AND_CLAIM = f"""
WITH moved AS ({_MOVED.format(expiry="")}
), recorded AS ({_RECORDED}
), claimed AS ({_CLAIMED}
), started AS ({_STARTED}
)
SELECT EXISTS (SELECT FROM recorded), claimed.*, started.number
FROM (VALUES (true)) AS one LEFT JOIN claimed ON true LEFT JOIN started ON true
"""


def enqueue_params(
    jobs: Sequence[NewJob], config: Config, parents: Parents = NO_PARENTS
) -> dict[str, Any]:
    """The arrays ``ENQUEUE`` takes, one per column; ``config`` fills in the defaults,
    ``parents`` (read in the same transaction) where each job starts."""
    stands = [parents.standing(job) for job in jobs]
    with_children = batch_parent_ids(jobs, parents)
    return dict(
        ids=[job.id for job in jobs],
        commands=[job.command for job in jobs],
        states=[stand.state.value for stand in stands],
        after_rules=[job.after_rule.value if job.id in parents.of else None for job in jobs],
        unmets=[stand.unmet for stand in stands],
        cancelled_bys=[stand.cancelled_by for stand in stands],
        last_errors=[stand.reason for stand in stands],
        has_children=[job.id in with_children for job in jobs],
        # (psycopg builds an array from values of one Python type: 5 and 2.5 would not do)
        retries=[int(config.max_retries if j.max_retries is None else j.max_retries) for j in jobs],
        priorities=[int(job.priority) for job in jobs],
        run_ats=[job.run_at for job in jobs],
        delays=[float(job.delay or 0.0) for job in jobs],
        timeouts=[float(config.job_timeout if j.timeout is None else j.timeout) for j in jobs],
        cwds=[job.cwd for job in jobs],
        enqueued_froms=[job.enqueued_from for job in jobs],
        envs=[env_text(job.env) for job in jobs],
        groups=[job.group for job in jobs],
        tags=[json_text(job.tags) for job in jobs],
        params=[json_text(job.params) for job in jobs],
    )


def edge_params(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What ``EDGES`` takes: the (parent, child) pairs as two arrays."""
    return {"parents": [parent for parent, _ in pairs], "children": [child for _, child in pairs]}


def finish_params(fence: Fence, result: RunResult, transition: Transition) -> dict[str, Any]:
    """What ``FINISH`` (and its variants) take: the fence, the result and the job's move."""
    return dict(
        state=transition.state.value,
        delay=float(transition.retry_delay),
        last_error=transition.last_error,
        **record_params(fence, result),
        exit_code=result.exit_code,
        outcome=result.outcome.value,
        error=result.error,
        result=json_text(result.result),
    )


def record_params(fence: Fence, result: RunResult) -> dict[str, Any]:
    """What ``RECORD_OUTPUT`` takes: the fence and the output (the tails and how many bytes
    each stream had in all)."""
    return dict(
        id=fence.job_id,
        attempt=fence.attempt,
        worker=fence.worker_id,
        attempt_id=fence.attempt_id,
        stdout=result.stdout,
        stderr=result.stderr,
        stdout_bytes=result.stdout_bytes,
        stderr_bytes=result.stderr_bytes,
    )


def fence_params(fences: Sequence[Fence]) -> dict[str, Any]:
    """Fences as the arrays that ``RENEW`` and ``CANCEL_REQUESTS`` take, one per field."""
    return dict(
        ids=[f.job_id for f in fences],
        numbers=[f.attempt for f in fences],
        workers=[f.worker_id for f in fences],
        attempt_ids=[f.attempt_id for f in fences],
    )
