-- The rate stored in every current snapshot is success / finished * 100 of its own counts
-- (finished = processed - in_progress: success + failed + no_answer).
select *
from {{ ref('fct_project_conversion_current') }}
where conversion_rate <> case
    when processed_numbers - in_progress_numbers = 0 then 0
    else round(100.0 * success_numbers / (processed_numbers - in_progress_numbers), 2)
end
