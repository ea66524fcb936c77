{#
  Lead quality per project x provider, plus one row per provider over every live project
  (`all_projects` true, project_id NULL; admins only in the API). provider_id NULL: loads
  without a provider. Load counts come from the loads, number figures from their numbers.
#}
{{ lead_quality_rollup(['provider_id']) }}
