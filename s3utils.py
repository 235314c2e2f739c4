"""The S3 API for project scripts (the implementation is toolbox.s3.operations):

    from toolbox.s3utils import download_s3_path, upload_s3_path
    download_s3_path("data/")          # -> the keys transferred; unchanged files are skipped

Paths are relative to the project root and to the bucket root (see docs/s3.md). Importing reads nothing
and connects nowhere; every failure is an `S3Error`.
"""
from toolbox.s3.operations import (S3Error, Transferred, api_server_online, delete_local_files, download_s3_path,
                                   get_local_files, get_s3_objects, keep_alive, list_s3_objects, remove_s3_path,
                                   send_request, shutdown_server, sync_s3_path, upload_s3_path)

__all__ = ["S3Error", "Transferred", "download_s3_path", "upload_s3_path", "sync_s3_path", "remove_s3_path",
           "list_s3_objects", "get_s3_objects", "get_local_files", "delete_local_files", "api_server_online",
           "send_request", "keep_alive", "shutdown_server"]
