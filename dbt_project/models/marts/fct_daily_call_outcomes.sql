-- Calls and their results per project and day (UTC), from the SoftPhone events matched to a
-- live project. A "call" is a call_ended event (the one that counts a call attempt).
select
    e.project_id,
    (e.occurred_at at time zone 'UTC')::date as call_date,
    count(*)::bigint as events,
    count(*) filter (where e.event_type = 'call_started')::bigint as calls_started,
    count(*) filter (where e.event_type = 'call_ended')::bigint as calls,
    count(*) filter (where e.event_type = 'call_result')::bigint as results,
    count(*) filter (where e.result_status = 'success')::bigint as success_results,
    count(*) filter (where e.result_status = 'failed')::bigint as failed_results,
    count(*) filter (where e.result_status = 'no_answer')::bigint as no_answer_results,
    count(*) filter (
        where e.event_type = 'call_result'
        and e.result_status is distinct from 'success'
        and e.result_status is distinct from 'failed'
        and e.result_status is distinct from 'no_answer'
    )::bigint as other_results,
    {{ rate(
        "count(*) filter (where e.result_status = 'success')",
        "count(*) filter (where e.event_type = 'call_result')"
    ) }} as success_rate
from {{ ref('stg_call_events') }} as e
inner join {{ ref('stg_projects') }} as p
    on p.project_id = e.project_id and not p.is_deleted
group by e.project_id, (e.occurred_at at time zone 'UTC')::date
