select
    id as load_id,
    kind,
    project_id,
    provider_id,
    sftp_job_id,
    source,
    dedupe_scope,
    dedupe_window_days,
    rows_read,
    inserted,
    duplicate_in_input,
    already_present,
    duplicate_elsewhere,
    invalid,
    lead_cost,
    created_at as loaded_at
from {{ source('app', 'number_loads') }}
