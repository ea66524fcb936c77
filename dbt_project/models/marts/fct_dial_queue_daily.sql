{#
  How each live project's base is being worked, one row per project and day (UTC): the dial-queue
  state as of this run (the categories of models/dialing/queue_state.py, in the same order of
  precedence, so they add up to the total), plus that day's calls. Incremental: a run replaces
  today's row of every project and leaves earlier days alone, so the table is the history.

  The local-hours rule (legal windows, holidays, schedules) is Python (models/dialing/policy.py)
  and not repeated here: `ready` = eligible in every other respect. Rules come from
  `project_dialing_rules`; a project without a row uses the defaults of
  models/dialing/queue_rules.py, passed in as vars (dbt_project.yml) - keep them in step.
#}
{{ config(
    materialized='incremental',
    unique_key=['project_id', 'snapshot_date'],
    incremental_strategy='delete+insert',
) }}

with rules as (
    select
        p.project_id,
        p.is_deleted,
        coalesce(r.max_attempts, {{ var('dial_queue_default_max_attempts') }}) as max_attempts,
        coalesce(r.min_gap_seconds, {{ var('dial_queue_default_min_gap_seconds') }})
            as min_gap_seconds,
        coalesce(r.outcomes, '{}'::jsonb) as outcomes
    from {{ ref('stg_projects') }} as p
    left join {{ source('app', 'project_dialing_rules') }} as r on r.project_id = p.project_id
    where not p.is_deleted
),

numbers as (
    select
        n.project_id,
        n.status,
        n.call_attempts,
        n.last_call_at,
        n.next_attempt_at,
        n.leased_until,
        r.max_attempts,
        r.min_gap_seconds,
        coalesce(
            (r.outcomes -> n.outcome ->> 'final')::boolean,
            n.outcome in ({{ "'" ~ var('dial_queue_default_final_outcomes') | join("', '") ~ "'" }})
        ) as outcome_final,
        exists (
            select 1 from {{ source('app', 'dnc_entries') }} as d
            where d.phone_number = n.phone_number
              and (d.project_id is null or d.project_id = n.project_id)
              and (d.expires_at is null or d.expires_at > now())
        ) as on_dnc
    from {{ ref('stg_dial_queue_numbers') }} as n
    inner join rules as r on r.project_id = n.project_id
),

categorised as (
    select
        project_id,
        case
            when status = 'success' or outcome_final then 'final'
            when on_dnc then 'dnc'
            when call_attempts >= max_attempts then 'exhausted'
            when leased_until >= now() then 'leased'
            when next_attempt_at > now()
                or last_call_at > now() - make_interval(secs => min_gap_seconds)
                then 'waiting_retry'
            else 'ready'
        end as category
    from numbers
),

state as (
    select
        project_id,
        count(*)::bigint as total_numbers,
        count(*) filter (where category = 'ready')::bigint as ready_numbers,
        count(*) filter (where category = 'waiting_retry')::bigint as waiting_retry_numbers,
        count(*) filter (where category = 'leased')::bigint as leased_numbers,
        count(*) filter (where category = 'exhausted')::bigint as exhausted_numbers,
        count(*) filter (where category = 'dnc')::bigint as dnc_numbers,
        count(*) filter (where category = 'final')::bigint as final_numbers
    from categorised
    group by project_id
),

calls as (
    select project_id, count(*)::bigint as calls
    from {{ ref('stg_call_events') }}
    where event_type = 'call_ended'
      and (occurred_at at time zone 'UTC')::date = (now() at time zone 'UTC')::date
    group by project_id
)

select
    r.project_id,
    (now() at time zone 'UTC')::date as snapshot_date,
    coalesce(s.total_numbers, 0) as total_numbers,
    coalesce(s.ready_numbers, 0) as ready_numbers,
    coalesce(s.waiting_retry_numbers, 0) as waiting_retry_numbers,
    coalesce(s.leased_numbers, 0) as leased_numbers,
    coalesce(s.exhausted_numbers, 0) as exhausted_numbers,
    coalesce(s.dnc_numbers, 0) as dnc_numbers,
    coalesce(s.final_numbers, 0) as final_numbers,
    coalesce(c.calls, 0) as calls_today,
    now() as calculated_at
from rules as r
left join state as s on s.project_id = r.project_id
left join calls as c on c.project_id = r.project_id
