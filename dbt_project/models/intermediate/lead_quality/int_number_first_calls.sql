-- When each number was first called: its earliest SoftPhone event (any type; events are kept
-- whether or not they changed the number). One pass over call_events.
select
    phone_number_id,
    min(occurred_at) as first_call_at
from {{ ref('stg_call_events') }}
where phone_number_id is not null
group by phone_number_id
