{#
  The conversion metrics, defined once. Every mart that reports conversion selects
  conversion_metrics() over rows of int_phone_number_rollup (grain: project x provider x geo x
  status, with `numbers`, `call_attempts`, `last_call_at`), grouped by its own dimensions.

  - total_numbers        every number (all statuses)
  - processed_numbers    numbers whose status is not 'new' (someone has worked on them)
  - in_progress_numbers  status 'in_progress' (a call started, no result yet)
  - success_numbers      status 'success'
  - failed_numbers       status 'failed'
  - no_answer_numbers    status 'no_answer'
  - conversion_rate      success / finished * 100, rounded to 2 decimals, where finished =
                         success + failed + no_answer (= processed - in_progress): the numbers
                         whose last call ended. A call in flight is not a failure yet, so the
                         rate no longer dips while calls are under way. 0 when nothing is
                         finished (never NULL, never a division by zero)
  - call_attempts        sum of the numbers' call_attempts
  - last_call_at         latest last_call_at of the numbers (NULL if never called)
#}

{% macro rate(numerator, denominator) -%}
    coalesce(round(100.0 * ({{ numerator }}) / nullif({{ denominator }}, 0), 2), 0)::numeric(5, 2)
{%- endmacro %}

{% macro count_status(condition, rows='numbers') -%}
    coalesce(sum({{ rows }}) filter (where {{ condition }}), 0)::bigint
{%- endmacro %}

{% macro conversion_metrics(rows='numbers') -%}
    {{ count_status('status is not null', rows) }} as total_numbers,
    {{ count_status("status <> 'new'", rows) }} as processed_numbers,
    {{ count_status("status = 'in_progress'", rows) }} as in_progress_numbers,
    {{ count_status("status = 'success'", rows) }} as success_numbers,
    {{ count_status("status = 'failed'", rows) }} as failed_numbers,
    {{ count_status("status = 'no_answer'", rows) }} as no_answer_numbers,
    {{ rate(
        count_status("status = 'success'", rows),
        count_status("status in ('success', 'failed', 'no_answer')", rows)
    ) }} as conversion_rate,
    coalesce(sum(call_attempts), 0)::bigint as call_attempts,
    max(last_call_at) as last_call_at
{%- endmacro %}

{#
  The `project_id` var (a one-project refresh) as a SQL predicate; a clear error for anything
  but a positive integer.
#}
{% macro project_filter(column='project_id') -%}
    {%- set value = var('project_id', none) -%}
    {%- if value is none or value == '' -%}
        true
    {%- else -%}
        {%- if value is not number and not (value is string and value.isdigit()) -%}
            {{ exceptions.raise_compiler_error("var project_id must be a project id (a positive integer), got " ~ value) }}
        {%- endif -%}
        {{ column }} = {{ value | int }}
    {%- endif -%}
{%- endmacro %}

{#
  Post-hook of fct_project_conversion: append this run's snapshot (one calculated_at per dbt
  invocation, for every project it covers) to the app table the API reads. It runs inside the
  model's transaction, so the view and its snapshot land together.
#}
{% macro append_conversion_snapshot() -%}
    insert into {{ source('app', 'project_conversions') }} (
        project_id, total_numbers, processed_numbers, in_progress_numbers, success_numbers,
        failed_numbers, no_answer_numbers, conversion_rate, call_attempts, last_call_at,
        calculated_at
    )
    select
        project_id, total_numbers, processed_numbers, in_progress_numbers, success_numbers,
        failed_numbers, no_answer_numbers, conversion_rate, call_attempts, last_call_at,
        {{ snapshot_time() }}
    from {{ this }}
    where {{ project_filter() }}
    on conflict (project_id, calculated_at) do nothing
{%- endmacro %}

{# One timestamp per dbt invocation: every mart and snapshot row of a run carries the same one. #}
{% macro snapshot_time() -%}
    '{{ run_started_at.isoformat() }}'::timestamptz
{%- endmacro %}
