"""Job processes: every job runs in a child process of each participant (server and sites).

The long-lived parent (``flruntime site start``) keeps registration, heartbeats, the job store, the scheduler,
the admin service and the dashboard; it never imports a job's code. Each job's components live in a job
process that the parent starts, watches and ends (:mod:`flruntime.jobproc.process`).
"""
