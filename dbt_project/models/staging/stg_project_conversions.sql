select
    id as snapshot_id,
    project_id,
    total_numbers,
    processed_numbers,
    in_progress_numbers,
    success_numbers,
    failed_numbers,
    no_answer_numbers,
    conversion_rate,
    call_attempts,
    last_call_at,
    calculated_at
from {{ source('app', 'project_conversions') }}
