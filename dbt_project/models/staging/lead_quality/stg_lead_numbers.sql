-- The numbers a recorded load inserted (source_load_id NULL: loaded before loads were kept).
select
    id as phone_number_id,
    source_load_id as load_id,
    geo_id,
    status,
    call_attempts,
    last_call_at
from {{ source('app', 'phone_numbers') }}
where source_load_id is not null
