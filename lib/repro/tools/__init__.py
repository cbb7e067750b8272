"""The command-line tools: run a chapter (run), the scoreboard page (scoreboard), the browser check of the site (sitecheck), the store's re-check (verify)."""
