"""The commit and the uncommitted files of the checkout, for the reports."""

from __future__ import annotations

import subprocess


def git_state(root: str) -> dict:
    """``{"commit", "dirty", "dirty_files"}`` of the git checkout at ``root`` (tracked files)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout
        return {"commit": commit or None, "dirty": bool(status.strip()),
                "dirty_files": [ln[3:] for ln in status.splitlines()][:50]}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "error": str(exc)}
