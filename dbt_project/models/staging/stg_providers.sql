select
    id as provider_id,
    code as provider_code,
    name as provider_name,
    type as provider_type,
    status as provider_status
from {{ source('app', 'providers') }}
