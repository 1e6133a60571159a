"""Training and evaluation data for the toy model: `vidflow synth` datasets read back in Python.

The frames are never decoded in Python: `vidflow synth --dump-frames F` decodes every mp4 it wrote
with vidflow's own decoder and segment-middle sampling and stores the F frames as uint8
`frames/<task>.npy`, so training sees exactly the pixels `vidflow eval` feeds the vision graph.
Preprocessing is then the manifest's: the frames are already 64x64 (resize and crop are the
identity), so only rescale and mean/std normalisation remain (`normalise`).
"""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..tiny import CLIP_MEAN, CLIP_STD

RESCALE = np.float32(1 / 255)


def default_vidflow() -> str:
    """`target/release/vidflow` of this checkout, else $VIDFLOW_BIN."""
    env = os.environ.get("VIDFLOW_BIN")
    if env:
        return env
    return str(Path(__file__).resolve().parents[3] / "target" / "release" / "vidflow")


def synth(vidflow: str, out: str, seed: int, per_task: int, suite: str, dump_frames: int) -> list[str]:
    """Runs `vidflow synth`; returns the command line (as recorded in the settings file)."""
    cmd = [vidflow, "synth", "--out", out, "--seed", str(seed), "--per-task", str(per_task),
           "--suite", suite, "--dump-frames", str(dump_frames)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return cmd


@dataclass
class Task:
    """One task of a synth dataset: prompts and frames, records in file order."""

    name: str
    questions: list[str]
    candidates: list[list[str]]
    answers: list[int]
    # uint8 [N, F, H, W, 3]
    frames: np.ndarray


def load(dataset_dir: str) -> dict[str, Task]:
    """Reads `json/<task>.json` and `frames/<task>.npy` of a synth dataset, tasks in name order."""
    tasks = {}
    json_dir = os.path.join(dataset_dir, "json")
    for name in sorted(os.listdir(json_dir)):
        if not name.endswith(".json"):
            continue
        task = name[: -len(".json")]
        with open(os.path.join(json_dir, name)) as f:
            records = json.load(f)
        frames = np.load(os.path.join(dataset_dir, "frames", f"{task}.npy"))
        if len(frames) != len(records):
            raise ValueError(f"{dataset_dir}: {task} has {len(records)} records but {len(frames)} frame sets")
        tasks[task] = Task(
            name=task,
            questions=[r["question"] for r in records],
            candidates=[r["candidates"] for r in records],
            answers=[r["candidates"].index(r["answer"]) for r in records],
            frames=frames,
        )
    return tasks


def normalise(frames: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W]: x * (1/255), then (x - mean) / std, the
    manifest's order of operations in float32 (as src/video/preprocess.rs)."""
    x = frames.astype(np.float32) * RESCALE
    x = (x - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3)))
