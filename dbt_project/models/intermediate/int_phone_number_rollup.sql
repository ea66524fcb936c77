{#
  The one pass over phone_numbers (tens of millions of rows), down to project x provider x geo x
  status, that every conversion mart aggregates further. Numbers of soft-deleted projects are
  left out.

  A full run rebuilds it (full_refresh). With --vars '{project_id: N}' only project N's rows are
  replaced: the pre-hook deletes them and the model inserts them again, read through the
  (project_id, status, id) index, in one transaction.
#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    full_refresh=(var('project_id', none) is none),
    pre_hook="{{ delete_project_rows() }}",
) }}
select
    n.project_id,
    n.provider_id,
    n.geo_id,
    n.status,
    count(*)::bigint as numbers,
    sum(n.call_attempts)::bigint as call_attempts,
    max(n.last_call_at) as last_call_at
from {{ ref('stg_phone_numbers') }} as n
inner join {{ ref('stg_projects') }} as p
    on p.project_id = n.project_id and not p.is_deleted
{% if is_incremental() -%}
where {{ project_filter('n.project_id') }}
{%- endif %}
group by n.project_id, n.provider_id, n.geo_id, n.status
