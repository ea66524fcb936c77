-- Conversion per provider over all live projects: every provider (zeros if it delivered
-- nothing yet) plus one row with provider_id NULL for numbers without a provider.
select
    pr.provider_id,
    pr.provider_code,
    pr.provider_name,
    {{ conversion_metrics() }},
    {{ snapshot_time() }} as calculated_at
from {{ ref('stg_providers') }} as pr
left join {{ ref('int_phone_number_rollup') }} as r on r.provider_id = pr.provider_id
group by pr.provider_id, pr.provider_code, pr.provider_name
union all
select
    null,
    null,
    null,
    {{ conversion_metrics() }},
    {{ snapshot_time() }}
from {{ ref('int_phone_number_rollup') }}
where provider_id is null
having count(*) > 0
