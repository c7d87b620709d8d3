"""The built-in web group (aiohttp). ``adapters.web.adapter`` holds ``WebAdapter`` and its factory; the HTTP
API, live updates, storage, files and the page's static files (``static/``) live beside it."""
