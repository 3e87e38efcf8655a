"""The Slack adapter: a Bolt app built in a factory, thin listeners, Block Kit rendering."""
