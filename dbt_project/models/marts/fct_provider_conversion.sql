-- Conversion per project and provider (numbers without a provider: provider_id NULL).
select
    r.project_id,
    r.provider_id,
    pr.provider_code,
    pr.provider_name,
    {{ conversion_metrics() }},
    {{ snapshot_time() }} as calculated_at
from {{ ref('int_phone_number_rollup') }} as r
left join {{ ref('stg_providers') }} as pr on pr.provider_id = r.provider_id
group by r.project_id, r.provider_id, pr.provider_code, pr.provider_name
