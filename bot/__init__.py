"""Every edge with I/O, grouped by domain around one application service.

- ``service/``: the use cases every adapter calls (recommend, feedback, outbox, reads,
  approvals, deferrals); ``NPOService`` is the one object adapters hold.
- Adapters: ``slack/``, ``console/``, ``alerts/`` (Alertmanager), ``cli/`` (the ``npo``
  command: argument parsing and rendering).
- ``monitoring/``: the scheduled jobs (monitor tick, expiry, retention, the scheduler).
- ``reporting/``: what people read (stats, charts, metrics, audit export, evaluations).
- ``governance/``: playbook submissions, the library, policy files.
- ``context/`` and ``extraction/``: what a scenario is made of (facts, fields of the text).
- ``db/``: tables, queries, migrations.
- ``wiring.py``: the composition root, the only place concrete adapters are built;
  ``settings.py``: configuration, built once; ``logs.py``, ``text_input.py``, ``native.py``:
  logging, bounded text from outside, native load order.

The layers (``core`` ← ``retrieval`` ← ``bot``) and these boundaries are import contracts in
``pyproject.toml``, checked by ``make lint``.
"""
