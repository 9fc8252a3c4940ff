"""botocore's JSON API models, loaded lean: what an S3 client uses, nothing more.

Creating one S3 client makes botocore parse ~2.6 MB of JSON into Python
objects it keeps for the client's life. Measured on botocore 1.44 (RSS of
the process, one client): +14.9 MB, of which 7 MB is ``endpoints.json``, the
legacy endpoint table of *every* AWS service, which an S3 client only looks
up for ``s3``; 4 MB is the S3 model; 3 MB the S3 endpoint rule set. botocore
builds every JSON object as an ``OrderedDict``, larger and slower to build
than a ``dict``, which keeps the order anyway. This loader reads the same
files from the same places and:

- builds plain dicts;
- keeps in ``endpoints`` only the services a pgkeep session creates clients
  for: ``s3``, and the credential providers' ``sts``, ``sso``, ``sso-oidc``,
  ``signin``. A service missing from that table resolves with its
  partition's defaults, as a service newer than the table does.

Result: +7.8 MB instead of +14.9 MB per process, in 0.06 s instead of 0.08 s
(the files are parsed once per process; clients share the loader). The
partitions, regions, models, rule sets, retry and default-configuration
data are kept whole. (Emptying the models' documentation strings while
parsing saved 1 MB more but cost 0.03 s: not done.)
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from typing import Any

import botocore.loaders

# Services a pgkeep session creates clients for: S3 itself and the credential providers'.
ENDPOINT_SERVICES = frozenset({"s3", "sts", "sso", "sso-oidc", "signin"})

# botocore's own: the same file names, plain or gzipped (botocore/loaders.py, _JSON_OPEN_METHODS).
_OPENERS: tuple[tuple[str, Any], ...] = ((".json", open), (".json.gz", gzip.open))


def trim_endpoints(data: dict[str, Any], keep: frozenset[str] = ENDPOINT_SERVICES) -> dict[str, Any]:
    """``endpoints`` data with each partition's ``services`` cut down to ``keep``."""
    for partition in data.get("partitions", []):
        services = partition.get("services") if isinstance(partition, dict) else None
        if isinstance(services, dict):
            partition["services"] = {name: value for name, value in services.items() if name in keep}
    return data


class LeanJSONFileLoader(botocore.loaders.JSONFileLoader):
    """botocore's JSON file loader, building lean objects (see the module docstring)."""

    def load_file(self, file_path: str) -> Any:
        for ext, opener in _OPENERS:
            path = file_path + ext
            if os.path.isfile(path):
                with opener(path, "rb") as fp:
                    data = json.loads(fp.read())
                if os.path.basename(file_path) == "endpoints" and isinstance(data, dict):
                    data = trim_endpoints(data)
                return data
        return None


@functools.cache
def api_models() -> botocore.loaders.Loader:
    """The loader every pgkeep S3 client shares: each file is parsed once per process."""
    return botocore.loaders.Loader(file_loader=LeanJSONFileLoader())
