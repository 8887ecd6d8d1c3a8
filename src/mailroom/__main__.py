from mailroom.cli import app

app()
