"""The console adapters: ``npo chat`` (people), ``npo chat --json`` (scripts) and the demo.
They call the service and render text; they never import ``bot.db``."""
