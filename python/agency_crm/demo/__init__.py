"""The demo's data: three client businesses of a lead-generation agency with 180 days of
campaigns, touches, meetings and deals, written through the real tables and lifecycle triggers
(:mod:`agency_crm.demo.seed`), and a count, from the data, of every lifecycle rule it exercised."""
