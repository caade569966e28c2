"""A store as agenda-decl 0.1.0 left it, before it followed the npm packages' layouts: the
PostgreSQL table with ``skip_days INTEGER[]`` (and the columns it added to Agenda's table), and
Redis job hashes with a ``lockedAt`` field and ``data = 'null'``. The statements and fields are
the ones agenda-decl 0.1.0 wrote (agenda_decl/backends/_postgres_sql.py and _redis_lua.py at
commit 48b3e27), with one job of each kind in them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from redis.asyncio import Redis

from tests.backends.servers import POSTGRES_URL, REDIS_URL

_TABLE = """
CREATE TABLE {table} (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    next_run_at TIMESTAMPTZ,
    type VARCHAR(10) NOT NULL DEFAULT 'normal' CHECK (type IN ('normal', 'single')),
    locked_at TIMESTAMPTZ,
    last_finished_at TIMESTAMPTZ,
    failed_at TIMESTAMPTZ,
    fail_count INTEGER DEFAULT NULL,
    fail_reason TEXT,
    repeat_timezone VARCHAR(100),
    last_run_at TIMESTAMPTZ,
    repeat_interval VARCHAR(255),
    data JSONB DEFAULT '{{}}'::jsonb,
    repeat_at VARCHAR(255),
    disabled BOOLEAN DEFAULT FALSE,
    progress REAL,
    fork BOOLEAN DEFAULT FALSE,
    last_modified_by VARCHAR(255),
    debounce_started_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS debounce_started_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS start_date TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS end_date TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS skip_days INTEGER[];
CREATE INDEX {find_idx} ON {table} (name, next_run_at, priority DESC, locked_at, disabled)
    WHERE disabled = FALSE;
CREATE UNIQUE INDEX {single_idx} ON {table} (name) WHERE type = 'single';
CREATE INDEX {locked_idx} ON {table} (locked_at) WHERE locked_at IS NOT NULL;
CREATE INDEX {next_idx} ON {table} (next_run_at) WHERE next_run_at IS NOT NULL;
CREATE OR REPLACE FUNCTION {function}() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER {trigger} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}();
INSERT INTO {table} (name, type, next_run_at, repeat_interval, data, skip_days,
                     last_modified_by)
VALUES ('legacy-weekdays', 'single', NOW() + INTERVAL '1 day', '1 day', '{{"legacy": true}}',
        '{{0,6}}', 'agenda-decl-0.1'),
       ('legacy-queued', 'normal', NOW() + INTERVAL '1 hour', NULL, NULL, NULL,
        'agenda-decl-0.1');
"""

#: Two jobs as agenda-decl 0.1.0's insert script wrote them (every field it set).
_REDIS_JOBS: list[dict[str, Any]] = [
    {"id": "5b0c7a52-1b7e-4a4e-9a57-0c1d2e3f4a01", "name": "legacy-weekdays", "type": "single",
     "priority": "0", "data": '{"legacy":true}', "repeatInterval": "1 day", "skipDays": "[0,6]"},
    {"id": "5b0c7a52-1b7e-4a4e-9a57-0c1d2e3f4a02", "name": "legacy-queued", "type": "normal",
     "priority": "0", "data": "null", "repeatInterval": "null", "skipDays": "null"},
]


async def make_postgres(table: str) -> None:
    names = {
        "table": table, "find_idx": f"{table}_find_and_lock_idx",
        "single_idx": f"{table}_single_job_idx", "locked_idx": f"{table}_locked_at_idx",
        "next_idx": f"{table}_next_run_at_idx", "trigger": f"{table}_updated_at_trigger",
    }
    statement = sql.SQL(_TABLE).format(
        function=sql.Identifier(f"update_{table.lower()}_updated_at"),
        **{key: sql.Identifier(value) for key, value in names.items()},
    )
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(statement)


async def make_redis(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        for order, job in enumerate(_REDIS_JOBS, start=1):
            fields = {
                "repeatTimezone": "null", "repeatAt": "null", "disabled": "false",
                "fork": "false", "lastModifiedBy": "agenda-decl-0.1", "startDate": "null",
                "endDate": "null", "debounceStartedAt": "null", "lockedAt": "null",
                "lockedAtMs": "null", "lastFinishedAt": "null", "failedAt": "null",
                "failCount": "null", "failReason": "null", "lastRunAt": "null",
                "progress": "null", "nextRunAt": "2099-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
                "insertOrder": str(order), **job,
            }
            await client.hset(f"{prefix}job:{job['id']}", mapping=fields)
            await client.sadd(f"{prefix}jobs:all", job["id"])
            await client.sadd(f"{prefix}jobs:by_name:{job['name']}", job["id"])
            await client.zadd(f"{prefix}jobs:by_next_run_at", {job["id"]: 4070908800000.1})
            if job["type"] == "single":
                await client.set(f"{prefix}jobs:single:{job['name']}", job["id"])
        await client.set(f"{prefix}decl:insert_order", len(_REDIS_JOBS))
    finally:
        await client.aclose()
