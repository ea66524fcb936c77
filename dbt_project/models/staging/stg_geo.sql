select
    id as geo_id,
    country_code,
    region,
    city,
    timezone
from {{ source('app', 'geo') }}
