select
    id as project_id,
    code as project_code,
    name as project_name,
    status as project_status,
    is_deleted,
    deleted_at,
    created_at
from {{ source('app', 'projects') }}
