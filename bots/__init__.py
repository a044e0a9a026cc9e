"""Channel adapters (Telegram, Discord, the web widget) around one channel-agnostic dialogue engine."""
