"""The paper's converted checkpoint layouts (PLLaVA, Mini-InternVL-FT) run through the Rust engine.

Their parity with the reference module structure is in test_pllava.py / test_internvl.py; here a
package converted from a random reference-layout checkpoint goes through the release binary that
`make test` builds first: `vidflow check` (knockout optimised = naive, pruned plan = dense) and
`vidflow eval` (full attention and the published pathway config) on a frame folder written here.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from vidflow_export import internvl, pllava

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "target" / "release" / "vidflow"
CONVERTERS = {"pllava": pllava, "internvl": internvl}


def _vidflow(*args: str) -> subprocess.CompletedProcess:
    if not BINARY.exists():
        pytest.fail(f"{BINARY.relative_to(REPO)} is missing: `make test` builds it before the Python tests")
    out = subprocess.run([str(BINARY), *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"vidflow {' '.join(args)}:\n{out.stderr}"
    return out


def _frames(folder: Path, n: int, size: int) -> None:
    """`n` PNG frames of a red square moving right (written with the stdlib's zlib, no PIL)."""
    import struct
    import zlib

    folder.mkdir(parents=True)
    for f in range(n):
        img = np.zeros((size, size, 3), dtype=np.uint8)
        img[..., 0] = np.arange(size)[None, :] * 3 % 256
        img[..., 2] = 90
        x = f * (size - 16) // max(1, n - 1)
        img[size // 2 - 8:size // 2 + 8, x:x + 16] = [240, 30, 30]
        raw = b"".join(b"\x00" + img[r].tobytes() for r in range(size))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
        (folder / f"frame_{f:02d}.png").write_bytes(png)


@pytest.mark.parametrize("family", sorted(CONVERTERS))
def test_converted_package_runs_in_vidflow(family, tmp_path):
    conv = CONVERTERS[family]
    ckpt, pkg = tmp_path / "ckpt", tmp_path / "pkg"
    conv.write_random_checkpoint(str(ckpt), seed=0)
    conv.export_package(str(ckpt), str(pkg), name=f"tiny-{family}")
    check = _vidflow("check", "--model", str(pkg), "--threads", "1")
    assert "checks passed" in check.stdout, check.stdout

    m = yaml.safe_load((pkg / "model.yaml").read_text())
    _frames(tmp_path / "frames" / "clip", m["video"]["num_frames"], m["video"]["frame_height"])
    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps([
        {"id": "s0", "task": "action_sequence", "video": "frames/clip", "question": "Where does the square go?",
         "options": ["Left", "Right", "Nowhere"], "answer": 1},
        {"id": "s1", "task": "scene_transition", "video": "frames/clip", "question": "What colour is the square?",
         "options": ["Red", "Blue"], "answer": 0},
    ]))
    for mode in ("full", "pathways:configs/pathways/llava-next-7b-video-ft.yaml"):
        out = tmp_path / f"eval-{len(mode)}"
        _vidflow("eval", "--model", str(pkg), "--data", f"json:{samples}", "--mode", mode, "--scale",
                 "--quiet", "--threads", "1", "--out", str(out))
        summary = json.loads((out / "summary.json").read_text())
        assert summary["overall"]["scored"] == 2, summary
