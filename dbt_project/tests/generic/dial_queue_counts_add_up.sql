{#
  Dial-queue rows whose categories do not add up to the total, or are negative.
#}
{% test dial_queue_counts_add_up(model) %}
select *
from {{ model }}
where ready_numbers + waiting_retry_numbers + leased_numbers + exhausted_numbers
        + dnc_numbers + final_numbers <> total_numbers
    or least(ready_numbers, waiting_retry_numbers, leased_numbers, exhausted_numbers,
             dnc_numbers, final_numbers, calls_today) < 0
{% endtest %}
