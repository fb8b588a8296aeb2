"""The LiteLLM proxy's way in: one `GmtRouting` built from the settings file that GMTROUTER_LITELLM_SETTINGS names.

The proxy's config.yaml refers to this module's `plugin` (router_settings.plugins) and `callback`
(litellm_settings.callbacks); both are parts of the same `GmtRouting`, so the callback knows the plugin's routes.
See docs/integrations.md.
"""

from __future__ import annotations

import os

from gmtrouter.integrations.litellm import GmtRouting
from gmtrouter.utils.errors import GmtError

SETTINGS_ENV = "GMTROUTER_LITELLM_SETTINGS"

_path = os.environ.get(SETTINGS_ENV)
if not _path:
    raise GmtError(f"set {SETTINGS_ENV} to the gmtrouter settings file (YAML or JSON) before starting the proxy")
gmt = GmtRouting.from_file(_path)
plugin = gmt.plugin
callback = gmt.callback
