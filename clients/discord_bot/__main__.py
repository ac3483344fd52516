from clients.discord_bot.bot import main

main()
