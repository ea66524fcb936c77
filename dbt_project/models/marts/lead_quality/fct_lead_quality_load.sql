-- Lead quality per load (an SFTP file or an API bulk request) of a live project.
with numbers as (
    select n.load_id, {{ lead_number_metrics() }}
    from {{ ref('int_lead_numbers') }} as n
    group by n.load_id
)
select
    l.load_id,
    l.kind,
    l.project_id,
    l.provider_id,
    l.sftp_job_id,
    l.source,
    l.loaded_at,
    l.cohort_week,
    l.dedupe_scope,
    l.rows_read,
    l.inserted,
    l.duplicate_in_input,
    l.already_present,
    l.duplicate_elsewhere,
    l.invalid,
    {{ share("l.invalid", "l.rows_read") }} as invalid_share,
    {{ share("l.duplicate_in_input + l.already_present + l.duplicate_elsewhere", "l.rows_read") }}
        as duplicate_share,
    coalesce(m.numbers, 0) as numbers,
    coalesce(m.dialled_numbers, 0) as dialled_numbers,
    coalesce(m.reached_numbers, 0) as reached_numbers,
    coalesce(m.success_numbers, 0) as success_numbers,
    coalesce(m.failed_numbers, 0) as failed_numbers,
    coalesce(m.no_answer_numbers, 0) as no_answer_numbers,
    coalesce(m.finished_numbers, 0) as finished_numbers,
    coalesce(m.call_attempts, 0) as call_attempts,
    coalesce(m.dialled_share, 0) as dialled_share,
    coalesce(m.reached_share, 0) as reached_share,
    coalesce(m.conversion_rate, 0) as conversion_rate,
    m.attempts_per_success,
    m.median_hours_to_first_call,
    l.lead_cost,
    round(l.lead_cost / nullif(m.success_numbers, 0), 2) as cost_per_success,
    {{ snapshot_time() }} as calculated_at
from (
    select
        sl.*,
        date_trunc('week', sl.loaded_at at time zone 'UTC')::date as cohort_week
    from {{ ref('stg_number_loads') }} as sl
    inner join {{ ref('stg_projects') }} as p on p.project_id = sl.project_id and not p.is_deleted
) as l
left join numbers as m on m.load_id = l.load_id
