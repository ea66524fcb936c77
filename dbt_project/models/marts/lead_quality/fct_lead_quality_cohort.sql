{#
  Lead quality per weekly load cohort (ISO week of the load, UTC, its Monday) x project x
  provider, plus the all-projects rows (`all_projects` true, project_id NULL).
#}
{{ lead_quality_rollup(['provider_id', 'cohort_week']) }}
