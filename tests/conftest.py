"""Suite-wide test settings. Nothing here may reach the internet: litellm is told to use its bundled cost
map (otherwise its first import tries to download one, whichever test imports it first)."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
