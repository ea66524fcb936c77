{#
  One row per number a recorded load inserted, with what lead quality needs: the load's project,
  provider and week (the buyer and the vendor of the lead, even if the number was edited or
  moved since), the number's geo and outcome, and the hours from its load to its first call.
  First call: the earliest call event; when no event of the number is kept but it was dialled,
  last_call_at (a later instant: an upper bound). Loads of deleted projects are left out.
#}
select
    n.phone_number_id,
    n.load_id,
    l.project_id,
    l.provider_id,
    n.geo_id,
    date_trunc('week', l.loaded_at at time zone 'UTC')::date as cohort_week,
    n.status,
    n.call_attempts,
    -- NULL when never called (greatest() would turn NULL into 0); a call logged before the load
    -- (clock skew) counts as 0 hours.
    case when fc.first_call_at is not null or n.call_attempts > 0 then
        greatest(0, extract(epoch from (
            coalesce(fc.first_call_at, n.last_call_at) - l.loaded_at
        )) / 3600.0)
    end as hours_to_first_call
from {{ ref('stg_lead_numbers') }} as n
inner join {{ ref('stg_number_loads') }} as l on l.load_id = n.load_id
inner join {{ ref('stg_projects') }} as p on p.project_id = l.project_id and not p.is_deleted
left join {{ ref('int_number_first_calls') }} as fc on fc.phone_number_id = n.phone_number_id
