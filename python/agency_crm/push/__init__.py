"""The push runner: drains ``crm.crm_push_queue`` into HubSpot, Pipedrive and Close.

Delivery is at least once with an effect of exactly once: every CRM record carries our stable
external key, a create is claimed (an intent row) before it is sent and its CRM id stored by the
push's next statement, and a create whose outcome is unknown is looked up by that key before it
is ever sent again (see docs/push.md). The runner is
:mod:`agency_crm.push.runner`; a client's CRM is a :mod:`~agency_crm.push.connection`.
"""
