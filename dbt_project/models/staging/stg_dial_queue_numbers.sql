-- The columns the dial-queue mart needs, with the number's outcome (models/dialing/queue_rules.py:
-- the finer result_data.outcome of a no_answer/failed, else the status).
select
    id as phone_number_id,
    project_id,
    phone_number,
    status,
    call_attempts,
    last_call_at,
    next_attempt_at,
    leased_until,
    case
        when status in ('no_answer', 'failed')
            and result_data ->> 'outcome' in ('no_answer', 'busy', 'voicemail', 'failed')
            then result_data ->> 'outcome'
        else status
    end as outcome
from {{ source('app', 'phone_numbers') }}
