"""What a started Agenda does: the processor (claim, queue, dispatch), the runner (one
execution), the state writer (group commit of state writes), typed events, the channel link
(wake-ups, revival, clock skew, publish and relay), the job log writer and the running stats.
The runtime sees the Agenda only through the protocols it defines; it never imports
:mod:`agenda_decl.agenda`."""
