{#
  Pre-hook of every model (dbt_project.yml): the platform's lock and bulk statement limits for
  the model's transaction (SET LOCAL), from the same variables as every other process
  (NUMBASE_DB_LOCK_TIMEOUT_SECONDS, NUMBASE_DB_BULK_STATEMENT_TIMEOUT_SECONDS; 0 = no limit).
  Without them a model whose swap (`alter table ... rename`) waits behind a long reader also
  queues every later reader of that mart behind itself - the API's conversion pages among them;
  with them the model fails with "canceling statement due to lock timeout" and the run (and the
  conversion request it serves) reports it.
#}
{% macro seconds_setting(name, default) -%}
    {%- set value = env_var(name, default) | string | trim -%}
    {%- if not value.replace('.', '', 1).isdigit() -%}
        {{ exceptions.raise_compiler_error(name ~ " must be a number of seconds, got " ~ value) }}
    {%- endif -%}
    {{ value }}
{%- endmacro %}

{% macro session_timeouts() -%}
    set local lock_timeout = '{{ seconds_setting("NUMBASE_DB_LOCK_TIMEOUT_SECONDS", "10") }}s';
    set local statement_timeout = '{{ seconds_setting("NUMBASE_DB_BULK_STATEMENT_TIMEOUT_SECONDS", "3600") }}s'
{%- endmacro %}
