-- Key rotation of encrypted args (pgq.encryption, pgq keys rotate): envelopes
-- made with a key other than the current one, re-sealed a batch at a time. A row
-- changed meanwhile (its args no longer the envelope read) is left as it is.

-- name: keys_stale_jobs
select id, args
  from {schema}.jobs
 where args ->> '$pgq_encrypted' = '1' and args ->> 'key' <> %(current)s and id > %(after)s
 order by id
 limit %(batch)s;

-- name: keys_reseal_jobs
update {schema}.jobs j
   set args = cast(n.new as jsonb)
  from unnest(cast(%(id)s as bigint[]), cast(%(old)s as text[]), cast(%(new)s as text[])) as n(id, old, new)
 where j.id = n.id and j.args = cast(n.old as jsonb)
returning j.id;

-- name: keys_stale_schedules
select name, args
  from {schema}.schedules
 where args ->> '$pgq_encrypted' = '1' and args ->> 'key' <> %(current)s;

-- name: keys_reseal_schedule
update {schema}.schedules
   set args = cast(%(new)s as jsonb), updated_at = now()
 where name = %(name)s and args = cast(%(old)s as jsonb)
returning name;
