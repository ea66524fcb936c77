{#
  Rows whose counts do not add up: success + failed + no_answer + in_progress <= processed <= total.
#}
{% test counts_add_up(model) %}
select *
from {{ model }}
where success_numbers + failed_numbers + no_answer_numbers + in_progress_numbers
        > processed_numbers
    or processed_numbers > total_numbers
    or least(total_numbers, processed_numbers, in_progress_numbers, success_numbers,
             failed_numbers, no_answer_numbers, call_attempts) < 0
{% endtest %}
