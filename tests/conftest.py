"""Suite-wide test settings. Nothing here may reach the internet: litellm is told to use its bundled cost
map (otherwise its first import tries to download one, whichever test imports it first)."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# bot.timezone unset means the host's local zone (tzlocal reads TZ first): the suite runs in UTC on any
# machine unless a test says otherwise.
os.environ.setdefault("TZ", "UTC")
# The example plugin packages carry their own tests, run against the installed packages by
# tests/test_plugin_packages.py; the suite does not collect them directly.
collect_ignore_glob = ["plugins/*"]

# One real Synapse homeserver for the whole session, shared by every Matrix test module (each registers users
# under unique names): a fixture defined here is one instance for all the modules below, where a fixture
# imported into each module would start a homeserver per module.
from tests.synapse_server import synapse  # noqa: E402, F401
