{#
  Lead quality per project x provider x geo (the number's geo; NULL: none), plus the all-projects
  rows. Only number figures: a load's rejected rows have no geo, so its invalid and duplicate
  counts and its cost are not split by geo (see fct_lead_quality_provider).
#}
select
    n.project_id,
    n.provider_id,
    n.geo_id,
    (grouping(n.project_id) = 1) as all_projects,
    {{ lead_number_metrics() }},
    {{ snapshot_time() }} as calculated_at
from {{ ref('int_lead_numbers') }} as n
group by grouping sets ((n.project_id, n.provider_id, n.geo_id), (n.provider_id, n.geo_id))
