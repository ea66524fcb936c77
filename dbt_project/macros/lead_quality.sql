{#
  Lead quality, defined once (docs: models/lead_quality/lead_quality.md, docs/lead-quality.md).
  lead_number_metrics() aggregates rows of int_lead_numbers (one row per number a recorded load
  inserted); lead_load_counts() sums rows of stg_number_loads.

  - numbers              numbers the loads inserted that still exist
  - dialled_numbers      call_attempts > 0
  - reached_numbers      status success or failed: a conversation happened (no_answer, new and
                         in_progress are not reached)
  - finished_numbers     success + failed + no_answer
  - conversion_rate      success / finished * 100 (the conversion definition of the project marts)
  - attempts_per_success call_attempts / success (NULL without a success)
  - median_hours_to_first_call  median of (first call - load time) over the dialled numbers
#}

{% macro share(numerator, denominator) -%}
    coalesce(round(100.0 * ({{ numerator }}) / nullif({{ denominator }}, 0), 2), 0)::numeric(5, 2)
{%- endmacro %}

{% macro lead_number_metrics() -%}
    count(n.phone_number_id)::bigint as numbers,
    count(*) filter (where n.call_attempts > 0)::bigint as dialled_numbers,
    count(*) filter (where n.status in ('success', 'failed'))::bigint as reached_numbers,
    count(*) filter (where n.status = 'success')::bigint as success_numbers,
    count(*) filter (where n.status = 'failed')::bigint as failed_numbers,
    count(*) filter (where n.status = 'no_answer')::bigint as no_answer_numbers,
    count(*) filter (where n.status in ('success', 'failed', 'no_answer'))::bigint
        as finished_numbers,
    coalesce(sum(n.call_attempts), 0)::bigint as call_attempts,
    {{ share("count(*) filter (where n.call_attempts > 0)", "count(n.phone_number_id)") }}
        as dialled_share,
    {{ share("count(*) filter (where n.status in ('success', 'failed'))", "count(n.phone_number_id)") }}
        as reached_share,
    {{ share("count(*) filter (where n.status = 'success')",
             "count(*) filter (where n.status in ('success', 'failed', 'no_answer'))") }}
        as conversion_rate,
    round(coalesce(sum(n.call_attempts), 0)::numeric
          / nullif(count(*) filter (where n.status = 'success'), 0), 2) as attempts_per_success,
    round((percentile_cont(0.5) within group (order by n.hours_to_first_call))::numeric, 2)
        as median_hours_to_first_call
{%- endmacro %}

{% macro lead_load_counts() -%}
    count(l.load_id)::bigint as loads,
    coalesce(sum(l.rows_read), 0)::bigint as rows_read,
    coalesce(sum(l.inserted), 0)::bigint as inserted,
    coalesce(sum(l.duplicate_in_input), 0)::bigint as duplicate_in_input,
    coalesce(sum(l.already_present), 0)::bigint as already_present,
    coalesce(sum(l.duplicate_elsewhere), 0)::bigint as duplicate_elsewhere,
    coalesce(sum(l.invalid), 0)::bigint as invalid,
    {{ share("sum(l.invalid)", "sum(l.rows_read)") }} as invalid_share,
    {{ share("sum(l.duplicate_in_input + l.already_present + l.duplicate_elsewhere)",
             "sum(l.rows_read)") }} as duplicate_share,
    sum(l.lead_cost) as lead_cost
{%- endmacro %}

{#
  A lead quality mart by `dims` (columns of both stg_number_loads + cohort_week and
  int_lead_numbers), per project and over all live projects (grouping sets): load counts from
  the loads, number figures from their numbers, joined on the same key. Cost per success counts
  only the successes of loads that have a cost.
#}
{% macro lead_quality_rollup(dims) -%}
with loads as (
    select
        l.*,
        date_trunc('week', l.loaded_at at time zone 'UTC')::date as cohort_week
    from {{ ref('stg_number_loads') }} as l
    inner join {{ ref('stg_projects') }} as p on p.project_id = l.project_id and not p.is_deleted
), load_side as (
    select
        l.project_id,
        {% for d in dims %}l.{{ d }},{% endfor %}
        (grouping(l.project_id) = 1) as all_projects,
        {{ lead_load_counts() }}
    from loads as l
    group by grouping sets (
        (l.project_id{% for d in dims %}, l.{{ d }}{% endfor %}),
        ({% for d in dims %}l.{{ d }}{% if not loop.last %}, {% endif %}{% endfor %})
    )
), number_side as (
    select
        n.project_id,
        {% for d in dims %}n.{{ d }},{% endfor %}
        (grouping(n.project_id) = 1) as all_projects,
        {{ lead_number_metrics() }},
        count(*) filter (where n.status = 'success' and c.lead_cost is not null)::bigint
            as costed_success_numbers
    from {{ ref('int_lead_numbers') }} as n
    inner join loads as c on c.load_id = n.load_id
    group by grouping sets (
        (n.project_id{% for d in dims %}, n.{{ d }}{% endfor %}),
        ({% for d in dims %}n.{{ d }}{% if not loop.last %}, {% endif %}{% endfor %})
    )
)
select
    ls.project_id,
    {% for d in dims %}ls.{{ d }},{% endfor %}
    ls.all_projects,
    ls.loads,
    ls.rows_read,
    ls.inserted,
    ls.duplicate_in_input,
    ls.already_present,
    ls.duplicate_elsewhere,
    ls.invalid,
    ls.invalid_share,
    ls.duplicate_share,
    coalesce(ns.numbers, 0) as numbers,
    coalesce(ns.dialled_numbers, 0) as dialled_numbers,
    coalesce(ns.reached_numbers, 0) as reached_numbers,
    coalesce(ns.success_numbers, 0) as success_numbers,
    coalesce(ns.failed_numbers, 0) as failed_numbers,
    coalesce(ns.no_answer_numbers, 0) as no_answer_numbers,
    coalesce(ns.finished_numbers, 0) as finished_numbers,
    coalesce(ns.call_attempts, 0) as call_attempts,
    coalesce(ns.dialled_share, 0) as dialled_share,
    coalesce(ns.reached_share, 0) as reached_share,
    coalesce(ns.conversion_rate, 0) as conversion_rate,
    ns.attempts_per_success,
    ns.median_hours_to_first_call,
    ls.lead_cost,
    round(ls.lead_cost / nullif(ns.costed_success_numbers, 0), 2) as cost_per_success,
    {{ snapshot_time() }} as calculated_at
from load_side as ls
left join number_side as ns
    on ns.all_projects = ls.all_projects
    and ns.project_id is not distinct from ls.project_id
    {% for d in dims %}and ns.{{ d }} is not distinct from ls.{{ d }}
    {% endfor %}
{%- endmacro %}
