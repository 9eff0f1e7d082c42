"""A throwaway Orthanc PACS (Debian's `orthanc` + `orthanc-dicomweb`) on loopback, with its
storage in a temporary folder, basic auth on, and the DICOMweb plugin at /dicom-web."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.server import free_port, stop

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
USER, PASSWORD = "radpilot", "pacs-test-password"


def dicomweb_plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        candidate = Path(folder) / "libOrthancDicomWeb.so"
        if candidate.is_file():
            return candidate
    return None


def missing() -> str | None:
    """Why Orthanc cannot start here, or None."""
    if shutil.which("Orthanc") is None:
        return "Debian's orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if dicomweb_plugin() is None:
        return "Debian's orthanc-dicomweb plugin is not installed"
    return None


@dataclass
class Orthanc:
    url: str  # the REST root
    process: subprocess.Popen[bytes]

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def rest(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(USER, PASSWORD), timeout=30)

    def store(self, data: bytes) -> str:
        """Store one DICOM file through Orthanc's REST API; its Orthanc id."""
        with self.rest() as http:
            reply = http.post("/instances", content=data)
            reply.raise_for_status()
            return str(reply.json()["ID"])


# A Lua filter that makes the PACS refuse every STOW-RS (403), as a read-only PACS does; its
# own REST upload (/instances) still works, to fill it.
REFUSE_STOW = ("function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n"
               "  return not (method == 'POST' and string.find(uri, '^/dicom%-web/studies'))\n"
               "end\n")  # fmt: skip


@contextmanager
def orthanc(root: Path, lua: str | None = None) -> Iterator[Orthanc]:
    port, dicom_port = free_port(), free_port()
    config = {
        "Name": "radpilot-test", "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"), "HttpPort": port, "DicomPort": dicom_port,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD}, "Plugins": [str(dicomweb_plugin())],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }  # fmt: skip
    if lua is not None:
        (root / "filter.lua").write_text(lua)
        config["LuaScripts"] = [str(root / "filter.lua")]
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("wb")
    process = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], cwd=root,
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    server = Orthanc(url=f"http://127.0.0.1:{port}", process=process)
    try:
        _wait(server)
        yield server
    finally:
        stop(process)
        log.close()


def _wait(server: Orthanc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with server.rest() as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {server.process.returncode}")
            try:
                if http.get("/system").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise TimeoutError("Orthanc did not answer within 60 s")
