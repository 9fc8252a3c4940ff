"""The lean botocore model loader (pgkeep.storage.s3_models): less memory, same requests.

No network: requests are captured when botocore is about to send them. The
S3 operations themselves run against SeaweedFS in tests/storage/.
"""

from __future__ import annotations

import gzip
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from pgkeep.storage.s3_models import ENDPOINT_SERVICES, LeanJSONFileLoader, api_models, trim_endpoints

# The operations pgkeep's S3 storage and WAL archive send.
OPERATIONS = {
    "head_bucket": {"Bucket": "b"},
    "head_object": {"Bucket": "b", "Key": "k"},
    "get_object": {"Bucket": "b", "Key": "k"},
    "put_object": {"Bucket": "b", "Key": "k", "Body": b"x", "IfNoneMatch": "*"},
    "delete_object": {"Bucket": "b", "Key": "k"},
    "list_objects_v2": {"Bucket": "b", "Prefix": "p/"},
    "create_multipart_upload": {"Bucket": "b", "Key": "k", "ChecksumAlgorithm": "SHA256"},
    "upload_part": {"Bucket": "b", "Key": "k", "UploadId": "u", "PartNumber": 1, "Body": b"x"},
    "complete_multipart_upload": {
        "Bucket": "b",
        "Key": "k",
        "UploadId": "u",
        "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": '"e"'}]},
        "IfNoneMatch": "*",
    },
    "abort_multipart_upload": {"Bucket": "b", "Key": "k", "UploadId": "u"},
    "list_multipart_uploads": {"Bucket": "b", "Prefix": "p/"},
}


class Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__(request.url)
        self.request = request


def capture(request: Any, **_: Any) -> None:
    raise Captured(request)


def client(loader: botocore.loaders.Loader | None, service: str, **kwargs: Any) -> Any:
    session = botocore.session.Session()
    if loader is not None:
        session.register_component("data_loader", loader)
    made = boto3.session.Session(botocore_session=session).client(
        service,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        **kwargs,
    )
    made.meta.events.register("before-send", capture)
    return made


def sent(made: Any, operation: str, params: dict[str, Any]) -> tuple[str, str, str]:
    """(method, URL, credential scope) of the request ``operation`` would send, or why not."""
    try:
        getattr(made, operation)(**params)
    except Captured as caught:
        request = caught.request
    except BotoCoreError as exc:  # e.g. no FIPS endpoint in China: the same refusal expected
        return ("refused", type(exc).__name__, str(exc))
    else:
        raise AssertionError(f"{operation} was not sent")
    auth = request.headers["Authorization"]
    auth = auth.decode() if isinstance(auth, bytes) else auth
    scope = auth.split("Credential=")[1].split(",")[0].split("/", 2)[2]  # date/region/service/...
    return request.method, request.url, scope


def test_files_load_as_plain_dicts_plain_or_gzipped(tmp_path: Path) -> None:
    model = {"documentation": "text", "shapes": {"S": {"type": "string"}}}
    (tmp_path / "plain.json").write_text(json.dumps(model))
    with gzip.open(tmp_path / "packed.json.gz", "wt") as fp:
        json.dump(model, fp)
    lean = LeanJSONFileLoader()
    for name in ("plain", "packed"):
        data = lean.load_file(str(tmp_path / name))
        assert data == model
        assert type(data) is dict and type(data["shapes"]["S"]) is dict
    assert lean.load_file(str(tmp_path / "missing")) is None


def test_the_endpoint_table_keeps_only_the_services_pgkeep_uses() -> None:
    full = botocore.loaders.Loader().load_data("endpoints")
    lean = api_models().load_data("endpoints")
    assert isinstance(full["partitions"][0]["services"], OrderedDict)
    assert len(full["partitions"][0]["services"]) > 100
    for full_partition, lean_partition in zip(full["partitions"], lean["partitions"], strict=True):
        assert set(lean_partition["services"]) == set(full_partition["services"]) & ENDPOINT_SERVICES
        assert "s3" in lean_partition["services"]
        for key in full_partition.keys() - {"services"}:
            assert lean_partition[key] == full_partition[key], key
    assert trim_endpoints({"version": 3}) == {"version": 3}  # an unknown shape is left alone


def test_the_s3_model_is_botocores() -> None:
    # Fresh loaders: creating a client edits the cached model in place (botocore moves
    # the bucket out of each requestUri), whichever loader read it.
    full = botocore.loaders.Loader().load_service_model("s3", "service-2")
    lean = botocore.loaders.Loader(file_loader=LeanJSONFileLoader()).load_service_model("s3", "service-2")
    assert lean == full
    assert type(lean["shapes"]) is dict and isinstance(full["shapes"], OrderedDict)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"])
@pytest.mark.parametrize(
    "config",
    [Config(), Config(s3={"addressing_style": "path"}), Config(use_fips_endpoint=True)],
    ids=["default", "path-style", "fips"],
)
def test_requests_are_the_ones_botocores_own_models_make(region: str, config: Config) -> None:
    ours = client(api_models(), "s3", region_name=region, config=config)
    theirs = client(None, "s3", region_name=region, config=config)
    for operation, params in OPERATIONS.items():
        assert sent(ours, operation, params) == sent(theirs, operation, params), operation
    for service in ("sts", "sso"):
        ours_other = client(api_models(), service, region_name=region)
        theirs_other = client(None, service, region_name=region)
        assert ours_other.meta.endpoint_url == theirs_other.meta.endpoint_url
        assert ours_other.meta.region_name == theirs_other.meta.region_name


def test_a_custom_endpoint_is_used_as_given() -> None:
    ours = client(api_models(), "s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    method, url, scope = sent(ours, "head_object", {"Bucket": "b", "Key": "k"})
    assert (method, url) == ("HEAD", "http://127.0.0.1:9/b/k")
    assert scope.startswith("us-east-1/s3/")
