-- Only the columns the metrics need: a view, so the planner reads just these.
select
    id as phone_number_id,
    project_id,
    provider_id,
    geo_id,
    status,
    call_attempts,
    last_call_at,
    created_at
from {{ source('app', 'phone_numbers') }}
