{#
  Rows whose lead figures do not add up: the load's rows are all accounted for, and
  success + failed + no_answer = finished <= numbers, reached <= finished, dialled <= numbers.
  `loads_counted` false: a mart without load counts (by geo).
#}
{% test lead_counts_add_up(model, loads_counted=true) %}
select *
from {{ model }}
where success_numbers + failed_numbers + no_answer_numbers <> finished_numbers
    or finished_numbers > numbers
    or reached_numbers > finished_numbers
    or dialled_numbers > numbers
    or least(numbers, dialled_numbers, reached_numbers, call_attempts) < 0
    {% if loads_counted -%}
    or rows_read <> inserted + duplicate_in_input + already_present + duplicate_elsewhere + invalid
    or numbers > inserted
    {%- endif %}
{% endtest %}
