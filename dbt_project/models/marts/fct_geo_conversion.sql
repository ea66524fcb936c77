-- Conversion per project and geo (numbers without a geo: geo_id NULL).
select
    r.project_id,
    r.geo_id,
    g.country_code,
    g.region,
    g.city,
    {{ conversion_metrics() }},
    {{ snapshot_time() }} as calculated_at
from {{ ref('int_phone_number_rollup') }} as r
left join {{ ref('stg_geo') }} as g on g.geo_id = r.geo_id
group by r.project_id, r.geo_id, g.country_code, g.region, g.city
