"""The amoCRM setup stage: read the target account, create what the migration needs there
(pipelines, statuses, loss reasons, custom fields) and map Pipedrive onto it (``map.*``).

:mod:`.mapping` holds the rules as plain functions; :mod:`.config` the ``[mapping]`` section.
"""
