-- Conversion per geo over all live projects: every geo (zeros if no numbers) plus one row with
-- geo_id NULL for numbers without a geo.
select
    g.geo_id,
    g.country_code,
    g.region,
    g.city,
    {{ conversion_metrics() }},
    {{ snapshot_time() }} as calculated_at
from {{ ref('stg_geo') }} as g
left join {{ ref('int_phone_number_rollup') }} as r on r.geo_id = g.geo_id
group by g.geo_id, g.country_code, g.region, g.city
union all
select
    null,
    null,
    null,
    null,
    {{ conversion_metrics() }},
    {{ snapshot_time() }}
from {{ ref('int_phone_number_rollup') }}
where geo_id is null
having count(*) > 0
