select
    id as call_event_id,
    event_id,
    event_type,
    phone_number_id,
    project_id,
    matched,
    -- call_result events carry the outcome in the payload (SoftPhone contract).
    case
        when event_type = 'call_result'
            then payload ->> '{{ var("call_result_status_key") }}'
    end as result_status,
    occurred_at,
    received_at
from {{ source('app', 'call_events') }}
