{{ config(materialized='view', post_hook="{{ append_conversion_snapshot() }}") }}
-- Conversion of every live project, from the rollup built in the same run. The post-hook appends
-- it to public.project_conversions as this run's snapshot (only project N with
-- --vars '{project_id: N}'). Projects without numbers get a row of zeros.
select
    p.project_id,
    {{ conversion_metrics() }}
from {{ ref('stg_projects') }} as p
left join {{ ref('int_phone_number_rollup') }} as r
    on r.project_id = p.project_id
where not p.is_deleted
group by p.project_id
