"""A Discord bot that screens image attachments with deepscreen (``python -m clients.discord_bot``)."""
