"""The Slack adapter: a Bolt app built in a factory, thin listeners, Block Kit rendering.
Listeners (``listeners/``) call the service (``bot.service``) and never ``bot.db``;
``translate.py`` turns payloads into the service's inputs, ``escape.py`` is the one place text
becomes mrkdwn. The app itself is built by ``bot.wiring``."""
