-- The rate stored in every current snapshot is success / processed * 100 of its own counts.
select *
from {{ ref('fct_project_conversion_current') }}
where conversion_rate <> case
    when processed_numbers = 0 then 0
    else round(100.0 * success_numbers / processed_numbers, 2)
end
