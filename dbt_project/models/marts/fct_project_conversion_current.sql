{{ config(materialized='view') }}
-- depends_on: {{ ref('fct_project_conversion') }}
-- The latest snapshot of every live project (the API's "current conversion").
select distinct on (s.project_id)
    s.project_id,
    p.project_code,
    p.project_name,
    s.total_numbers,
    s.processed_numbers,
    s.in_progress_numbers,
    s.success_numbers,
    s.failed_numbers,
    s.no_answer_numbers,
    s.conversion_rate,
    s.call_attempts,
    s.last_call_at,
    s.calculated_at
from {{ ref('stg_project_conversions') }} as s
inner join {{ ref('stg_projects') }} as p
    on p.project_id = s.project_id and not p.is_deleted
order by s.project_id, s.calculated_at desc
