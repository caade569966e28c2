-- The SQL of the PostgreSQL notification channel (read by ``postgres.py``): LISTEN/NOTIFY on
-- Agenda v6's channels. {channel} is a psycopg.sql.Identifier placeholder (so a literal
-- brace is written twice); every other value is a bound parameter.

-- notify_many --
-- pg_notify takes the channel as text: no identifier quoting, no string assembly.
-- Notifications published together go out in one statement (in array order), so a burst of
-- saves costs one round trip and one commit, not one each.
-- Binary parameters (%b): psycopg escapes every element of a text-format array.
SELECT pg_notify(c, p) FROM unnest(%b::text[], %b::text[]) AS m(c, p)

-- notify_one_channel --
-- notify_many when every notification goes to one channel (a worker's burst of state
-- notifications): the channel once, not an array element per payload.
SELECT pg_notify(%b::text, p) FROM unnest(%b::text[]) AS m(p)

-- listen --
LISTEN {channel}

-- probe --
-- The liveness probe of the LISTEN connection; it also reports which channels are still
-- subscribed, so a silently lost LISTEN is re-issued.
SELECT coalesce(array_agg(c), '{{}}') AS channels FROM pg_listening_channels() AS c
