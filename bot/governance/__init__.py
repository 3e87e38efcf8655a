"""Playbook governance: submissions vetted by a reviewer who is not their author, the
library people read, its sync across replicas, and reading the Rego policy files. May import
``bot.db`` and ``retrieval.playbook``; builds no policy engine (``bot.wiring`` does)."""
