"""What a non-editable install gets: the wheel holds the yaml defaults and the C kernel's source."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_properties_and_kernel_source(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("recbole_mamba-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "recbole_mamba/ops/scan_cpu.c" in names
    assert "recbole_mamba/properties/overall.yaml" in names
    assert "recbole_mamba/properties/model/MambaRec.yaml" in names
    assert "recbole_mamba/properties/tuned/ml-100k/MambaRec.yaml" in names
    assert "recbole_mamba/properties/tune/ml-100k/SASRec.yaml" in names
    assert {f"recbole_mamba/properties/experiment/{n}.yaml" for n in ("quick", "kuairand", "lfm1b")} <= names
    assert "recbole_mamba/experiment/runner.py" in names
