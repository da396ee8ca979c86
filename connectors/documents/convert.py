"""Word to PDF with LibreOffice headless, one private profile per call so parallel calls never collide."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path


class ConversionFailed(Exception):
    """LibreOffice could not convert the document; ``timed_out`` tells a hang from a refusal."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


def find_soffice(configured: str = "") -> str | None:
    """The soffice executable: the configured one, else the one on PATH."""
    return shutil.which(configured or "soffice") or shutil.which("libreoffice")


def to_pdf(content: bytes, soffice: str, timeout: float) -> bytes:
    """The document converted to PDF; raises ConversionFailed with LibreOffice's own words."""
    with tempfile.TemporaryDirectory(prefix="emflow-soffice-") as tmp:
        root = Path(tmp)
        source, outdir = root / "document.docx", root / "out"
        source.write_bytes(content)
        outdir.mkdir()
        command = [soffice, f"-env:UserInstallation={(root / 'profile').as_uri()}", "--headless", "--norestore",
                   "--nolockcheck", "--convert-to", "pdf", "--outdir", str(outdir), str(source)]
        # HOME too: some LibreOffice helpers write there despite UserInstallation.
        env = dict(os.environ, HOME=str(root), LANG=os.environ.get("LANG", "C.UTF-8"))
        # Own session: soffice forks soffice.bin, and on a timeout the whole group must go.
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=root,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ConversionFailed(f"LibreOffice did not finish within {timeout:.0f} s", timed_out=True) from None
        result = outdir / "document.pdf"
        if proc.returncode != 0 or not result.is_file():
            said = (stderr or stdout).decode("utf-8", "replace").strip()[-2000:]
            raise ConversionFailed(f"LibreOffice failed (exit {proc.returncode}): {said or 'no output'}")
        return result.read_bytes()
