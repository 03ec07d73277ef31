"""A small client for the TorchServes behind the gateway: their key files (`keys`), one upstream (`client`),
the rotation, retries and health over all of them (`pool`), what their describe answers say (`descriptions`),
and the failures they end in (`errors`), which are this package's own: what the caller answers is
`gateway.upstream`'s business.
"""

from __future__ import annotations

import logging

# Every module here logs under the one name the upstream log lines have always carried: operators filter on
# the `logger` field.
logger = logging.getLogger("gateway.upstream")
