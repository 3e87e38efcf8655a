"""What an incident's text names (device, interface, component, fault type, severity):
deterministic rules by default, an optional LLM for what the rules cannot classify. Pure
functions of the text and the playbooks' vocabulary (read with ``retrieval.playbook``);
imports no other ``bot`` package except ``bot.context.labels``."""
