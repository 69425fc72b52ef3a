"""The on-device web app: its static files, its contract with Python, its HTTPS server."""
