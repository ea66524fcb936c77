{#
  The one pass over phone_numbers (tens of millions of rows), down to project x provider x geo x
  status, that every conversion mart aggregates further. Numbers of soft-deleted projects are
  left out.

  Rebuilt in full on every run, a one-project recalculation too: the provider, geo and daily
  marts it feeds span every project, so a partial rollup would leave them stale (or mixed). The
  scan costs 1.55 s on 10M numbers (docs/benchmarks.md) - a one-project run is dominated by
  dbt's start-up anyway. `--vars '{project_id: N}'` only limits which project gets a snapshot.
#}
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
group by n.project_id, n.provider_id, n.geo_id, n.status
