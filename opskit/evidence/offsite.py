"""Off-site means off-site (R-BAK-3): is a replication site somewhere other than
the machine and the filesystem that hold the repository?

* ``file://PATH`` on the same device (``st_dev``) as a local repository is the
  same filesystem: one disk failure or one fire takes both.
* ``sftp://`` / ``s3://`` whose host (or S3 ``endpoint_url``) is ``localhost``, a
  loopback or unspecified address, or this machine's own name is the same host.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

from .text import T


def _path_of(location: str | None) -> str | None:
    """The local path of a repository or site location, None when remote."""
    if not location:
        return None
    if location.startswith("file://"):
        return location[len("file://"):]
    return None if "://" in location else location


def _device(path: str) -> int | None:
    """``st_dev`` of ``path`` or of its nearest existing parent."""
    path = os.path.abspath(path)
    while True:
        try:
            return os.stat(path).st_dev
        except OSError:
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent


def _this_host(host: str) -> bool:
    name = host.strip("[]").lower().rstrip(".")
    if name in ("", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"):
        return True
    try:
        addr = ipaddress.ip_address(name)
        return addr.is_loopback or addr.is_unspecified
    except ValueError:
        pass
    own = {socket.gethostname().lower(), socket.getfqdn().lower()}
    return name in own or name in {o.split(".")[0] for o in own if o}


def not_offsite(site: dict, repo: str | None) -> T | None:
    """Why ``site`` ({name, url, endpoint_url}) is not off-site from ``repo``, or None."""
    url = str(site.get("url") or "")
    local = _path_of(url)
    if local is not None:
        repo_path = _path_of(repo)
        if repo_path is not None and _device(local) == _device(repo_path):
            return T("site {site} ({url}) is on the same filesystem as the repository "
                     "{repo} (device {device})", site=site.get("name"), url=url,
                     repo=repo_path, device=_device(local))
        return None
    endpoint = site.get("endpoint_url")
    host = urlsplit(endpoint).hostname if endpoint else urlsplit(url).hostname
    if url.startswith("s3://") and not endpoint:
        return None                          # AWS itself
    if _this_host(host or ""):
        where = T("endpoint {url}", url=endpoint) if endpoint else url
        return T("site {site} ({where}) is this host ({host})", site=site.get("name"),
                 where=where, host=host or "-")
    return None
